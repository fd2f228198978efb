"""A minimal SSE reader for the contract tests: reads one response to its end and keeps timings, in the calling
thread (`read_stream`) or in a thread of its own while the test goes on (`BackgroundStream`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class StreamResult:
    status: int = 0
    events: list[dict] = field(default_factory=list)  # {"id": int, "event": str, "data": dict, "at": float}
    pings: list[float] = field(default_factory=list)  # seconds since the request was sent
    started: float = 0.0  # time.monotonic() when the request was sent
    retry_ms: int | None = None
    comments: list[str] = field(default_factory=list)
    duration: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return [e["id"] for e in self.events]


def read_stream(url: str, last_event_id: int | None = None, timeout: float = 30,
                on_open: Callable[[], None] | None = None) -> StreamResult:
    """GET an SSE url and parse it until the server ends the response (or `timeout` passes)."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    result = StreamResult(started=time.monotonic())
    started = result.started
    with httpx.Client(timeout=httpx.Timeout(timeout)) as client, \
            client.stream("GET", url, headers=headers) as resp:
        result.status = resp.status_code
        result.headers = dict(resp.headers)
        if resp.status_code != 200:
            resp.read()
            result.comments.append(resp.text)
            return result
        if on_open:
            on_open()
        block: dict[str, str] = {}
        for line in resp.iter_lines():
            now = time.monotonic() - started
            if now > timeout:
                raise TimeoutError(f"stream still open after {timeout}s")
            if line == "":
                if "data" in block:
                    result.events.append({"id": int(block["id"]), "event": block.get("event", "message"),
                                          "data": json.loads(block["data"]), "at": now})
                block = {}
            elif line.startswith(":"):
                text = line[1:].strip()
                if text == "ping":
                    result.pings.append(now)
                else:
                    result.comments.append(text)
            else:
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "retry":
                    result.retry_ms = int(value)
                else:
                    block[key] = value
    result.duration = time.monotonic() - started
    return result


class BackgroundStream:
    """`read_stream(url, **kwargs)` in a thread of its own, so the test can act while the stream is open.

    Returns from the constructor once the response has opened (status 200, headers read); AssertionError if it
    has not within `open_timeout` seconds. `result(timeout)` waits up to `timeout` seconds for the response to
    end and returns what was read; AssertionError if it is still open.
    """

    def __init__(self, url: str, open_timeout: float = 5, **kwargs) -> None:
        opened = threading.Event()
        self._out: dict[str, StreamResult] = {}
        self._thread = threading.Thread(
            target=lambda: self._out.update(r=read_stream(url, on_open=opened.set, **kwargs)))
        self._thread.start()
        assert opened.wait(open_timeout), f"{url}: not open after {open_timeout}s"

    def result(self, timeout: float) -> StreamResult:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"stream still open after {timeout}s"
        return self._out["r"]
