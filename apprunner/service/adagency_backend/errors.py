"""One JSON error shape for every failure; clients never see a stack trace or an echoed input value.

    {"error": {"code": "validation_error", "message": "...", "details": [{"field": "body.name", ...}]},
     "request_id": "..."}

Unexpected exceptions become a 500 of the same shape in middleware.RequestContextMiddleware.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .logs import request_id_var

log = logging.getLogger(__name__)

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
                 503: "unavailable"}


_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def allowed_methods(app: Any, scope: dict[str, Any]) -> list[str]:
    """Every method some route of `app` fully matches for this request's path (the Allow header of a 405).

    Probes each HTTP method through the routes' public `matches()`, so included routers count too.
    """
    routes = app.router.routes
    return [method for method in _HTTP_METHODS
            if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routes)]


class ApiError(Exception):
    """Raise in handlers for a deliberate 4xx/5xx with a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}, "request_id": request_id_var.get()}
    if details:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _location_part(part: Any) -> str:
    """A plain name or index as is; anything else (a client's object key) as `{key}`, never echoed."""
    text = str(part)
    return text if isinstance(part, int) or _PLAIN_NAME.fullmatch(text) else "{key}"


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Location and message only: pydantic's `input` and `ctx` may echo what the client sent."""
    details = []
    for err in exc.errors()[:20]:
        field = ".".join(_location_part(p) for p in err.get("loc", ()))
        details.append({"field": field, "message": str(err.get("msg", "invalid"))[:200],
                        "type": err.get("type", "invalid")})
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", "request validation failed", _validation_details(exc))

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        return error_response(503, "unavailable", "database temporarily unavailable; retry shortly",
                              headers={"Retry-After": "2"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods; list them all
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
        return error_response(exc.status_code, code, message, headers=headers or None)
