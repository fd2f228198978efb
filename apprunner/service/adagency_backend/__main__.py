"""Entrypoint (`python -m adagency_backend`, the image's ENTRYPOINT): one uvicorn process on $PORT.

`python -m adagency_backend worker` (the same image with the command `worker`) runs the run worker
instead (worker.py): no HTTP port, it consumes the run queue until SIGTERM.

Timeouts chosen for App Runner: its proxy ends any request at 120 s, SSE streams end themselves after
SSE_MAX_STREAM_SECONDS (<= 110 s), nothing here cuts a request shorter. On SIGTERM (App Runner
replacing an instance) the server stops accepting, SSE streams end at once so their clients reconnect
elsewhere with Last-Event-ID, in-flight requests get GRACEFUL_SHUTDOWN_SECONDS, then the pool closes.
"""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from .logs import configure_logging
from .main import create_app
from .settings import SettingsError, load_settings

KEEP_ALIVE_SECONDS = 75  # longer than typical proxy idle timeouts, so the proxy closes idle connections first
GRACEFUL_SHUTDOWN_SECONDS = 20


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that also tells the SSE streams to end as soon as a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, on_exit) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig, frame) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["worker"]:
        from .worker import main as worker_main

        return worker_main()
    if args:
        print("usage: python -m adagency_backend [worker]", file=sys.stderr)
        return 2
    configure_logging("INFO")
    log = logging.getLogger("adagency_backend")
    try:
        settings = load_settings(os.environ)
    except SettingsError as e:
        log.error("invalid configuration", extra={"reason": str(e)})
        return 2
    configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.bind_address, port=settings.port, log_config=None, access_log=False,
        proxy_headers=True, forwarded_allow_ips="*",  # only App Runner's proxy can reach the container
        server_header=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, lifespan="on")
    server = DrainingServer(config, on_exit=app.state.services.broker.begin_drain_threadsafe)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
