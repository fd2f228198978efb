"""Application factory: wires settings, database, storage, events and the API; owns startup and shutdown."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from . import __version__
from .api import router
from .credentials import SecretsManagerCredentials
from .db import Database, migrate_with_retry
from .errors import install_error_handlers
from .events import EventBroker
from .logs import register_secret
from .middleware import REQUEST_ID_HEADER, RequestContextMiddleware, RequestGuardMiddleware
from .runqueue import RunQueue
from .settings import Settings
from .storage import Storage

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    credentials: SecretsManagerCredentials
    db: Database
    storage: Storage
    broker: EventBroker
    run_queue: RunQueue | None = None  # None without RUN_QUEUE_URL: runs are refused with 503


def build_services(settings: Settings) -> Services:
    register_secret(settings.gemini_api_key)
    credentials = SecretsManagerCredentials(settings.db_secret_arn, settings.region)
    db = Database(settings, credentials)
    run_queue = RunQueue(settings.run_queue_url, settings.region) if settings.run_queue_url else None
    return Services(settings, credentials, db, Storage(settings.content_bucket, settings.region,
                                                        settings.upload_max_bytes),
                    EventBroker(lambda: db.connect(autocommit=True)), run_queue)


def create_app(settings: Settings) -> FastAPI:
    services = build_services(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        services.broker.bind_loop()
        applied = await migrate_with_retry(services.db)
        await services.db.open()
        log.info("service started", extra={
            "environment": settings.environment, "port": settings.port, "migrations_applied": applied,
            "sse_max_stream_seconds": settings.sse_max_stream_seconds,
            "sse_heartbeat_seconds": settings.sse_heartbeat_seconds, "cors_origins": settings.cors_origins,
            "gemini_configured": settings.gemini_configured, "runs_enabled": services.run_queue is not None})
        try:
            yield
        finally:
            await services.broker.close()
            await services.db.close()
            log.info("service stopped")

    local = settings.environment == "local"
    app = FastAPI(title="adagency backend", version=__version__, lifespan=lifespan,
                  docs_url="/docs" if local else None, redoc_url=None,
                  openapi_url="/openapi.json" if local else None)
    app.state.services = services
    install_error_handlers(app)
    app.include_router(router)
    # Added last = outermost: context (request id, access log, JSON 500) wraps CORS, which wraps the guard.
    app.add_middleware(RequestGuardMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                       allow_methods=["GET", "POST"],
                       allow_headers=["Content-Type", "Last-Event-ID", REQUEST_ID_HEADER],
                       expose_headers=[REQUEST_ID_HEADER], max_age=600)
    app.add_middleware(RequestContextMiddleware)
    return app
