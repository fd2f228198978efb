"""Pure ASGI middleware (safe for streaming responses): request context and a request-body guard."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .logs import request_id_var

log = logging.getLogger("adagency_backend.access")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # fullmatch: "$" would allow a trailing newline
MAX_BODY_BYTES = 64 * 1024  # JSON bodies only; files go straight to S3
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"DENY")]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Request id (accepted from X-Request-Id if well-formed, else new), access log, JSON 500s."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request_id_var.set(request_id)  # each request runs in its own task, so this never leaks
        started = time.perf_counter()
        status = 0

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k != REQUEST_ID_HEADER.encode()]
                headers += [(REQUEST_ID_HEADER.encode(), request_id.encode()), *_SECURITY_HEADERS]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            log.exception("unhandled error", extra={"path": scope.get("path", "")})
            if status:  # the response had started (a stream): nothing more can be sent
                raise
            await error_response(500, "internal_error", "internal error; quote the request id when reporting it")(
                scope, receive, send_with_context)
        finally:
            log.info("request", extra={
                "method": scope.get("method"), "path": scope.get("path"), "status": status or 500,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "client": (scope.get("client") or ("-",))[0]})


class BodyTooLarge(HTTPException):
    """Raised from receive(); FastAPI re-raises HTTPExceptions met while reading the body as they are."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class RequestGuardMiddleware:
    """Bodies: JSON only (415 otherwise) and at most MAX_BODY_BYTES (413), counted even when chunked."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = "chunked" in (_header(scope, b"transfer-encoding") or "").lower()
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await error_response(413, "payload_too_large",
                                 f"request body over {self.max_body_bytes} bytes")(scope, receive, send)
            return
        has_body = chunked or (length is not None and int(length) > 0)
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if has_body and content_type != "application/json":
            await error_response(415, "unsupported_media_type",
                                 "request body must be application/json")(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await error_response(413, "payload_too_large",
                                 f"request body over {self.max_body_bytes} bytes")(scope, receive, send)
