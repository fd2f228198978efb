"""HTTP API: health, readiness, projects, presigned uploads, project events (SSE), runs (queued for the worker)."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from . import repository, runs
from .errors import ApiError
from .events import stream_events
from .jsonsafe import MAX_DEPTH, find_unstorable
from .middleware import MAX_BODY_BYTES
from .storage import ALLOWED_CONTENT_TYPES

log = logging.getLogger(__name__)
router = APIRouter()

NAME_PUNCTUATION = set(" -_.,'&()!?:#+/@")
EVENT_DATA_MAX_BYTES = 8 * 1024
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,199}")  # fullmatch: "$" would allow a trailing newline
_EVENT_ID = re.compile(r"[0-9]{1,18}")  # fullmatch, ASCII only: "\d" also matches other scripts' digits
ContentType = Literal[tuple(ALLOWED_CONTENT_TYPES)]  # type: ignore[valid-type]


def _no_control_chars(value: str, allowed: str = "") -> str:
    if any(unicodedata.category(ch).startswith("C") and ch not in allowed for ch in value):
        raise ValueError("must not contain control or invisible format characters")
    return value


def _free_text_chars(value: str) -> str:
    return _no_control_chars(value, allowed="\n\t")


# Free text (a description, a brief): any printable characters, line breaks and tabs; no other control or
# invisible format characters (ValueError -> 422). Length limits go on the field: `Field(max_length=...)`.
FreeText = Annotated[str, AfterValidator(_free_text_chars)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProjectIn(Strict):
    name: str = Field(min_length=1, max_length=120)
    description: FreeText = Field("", max_length=2000)

    @field_validator("name")
    @classmethod
    def _name_charset(cls, v: str) -> str:
        _no_control_chars(v)
        if not all(ch.isalnum() or ch in NAME_PUNCTUATION for ch in v):
            raise ValueError(f"may contain letters, digits, spaces and {''.join(sorted(NAME_PUNCTUATION - {' '}))}")
        return v


class Project(BaseModel):
    id: UUID
    name: str
    description: str
    created_at: datetime


class ProjectList(BaseModel):
    items: list[Project]
    limit: int
    offset: int


class UploadIn(Strict):
    filename: str = Field(min_length=1, max_length=200)
    content_type: ContentType
    size_bytes: int = Field(gt=0, strict=True)

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str) -> str:
        if not _FILENAME.fullmatch(v) or ".." in v:
            raise ValueError("must be a plain file name: letters, digits, '.', '_', '-', spaces; no paths")
        return v


class UploadOut(BaseModel):
    key: str
    url: str
    fields: dict[str, str]
    expires_in: int
    max_bytes: int


class EventIn(Strict):
    type: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", mode="before")
    @classmethod
    def _data_storable(cls, v: Any) -> Any:
        """What PostgreSQL jsonb cannot store is refused here, before anything is written (see jsonsafe)."""
        if (problem := find_unstorable(v, "data", MAX_DEPTH)) is not None:
            raise PydanticCustomError("jsonb_unstorable", "{problem}", {"problem": str(problem)})
        return v

    @field_validator("data")
    @classmethod
    def _data_size(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(v, separators=(",", ":")).encode()) > EVENT_DATA_MAX_BYTES:
            raise ValueError(f"must serialise to at most {EVENT_DATA_MAX_BYTES} bytes of JSON")
        return v


class Event(BaseModel):
    id: int
    project_id: UUID
    type: str
    data: dict[str, Any]
    created_at: datetime


class ErrorDetail(BaseModel):
    field: str
    message: str
    type: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list, description="present for validation errors")


class ErrorBody(BaseModel):
    """Every error response: `{"error": {"code", "message", "details"?}, "request_id"}`."""

    error: ErrorInfo
    request_id: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
    gemini_configured: bool
    error: ErrorInfo | None = None


_ERROR_DESCRIPTIONS = {
    400: "The body is not parseable JSON (not UTF-8, nested too deep for the parser, a number over 4300 "
         "digits), or Last-Event-ID is not 1-18 ASCII digits.",
    404: "No project with this id.",
    413: f"The request body is over {MAX_BODY_BYTES} bytes.",
    415: "The request has a body that is not application/json.",
    422: "Validation failed; `error.details` names each field (path, query, header or body) and what is allowed.",
    503: "The database is temporarily unavailable; retry after Retry-After seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses an operation can return (all with the ErrorBody shape)."""
    return {status: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status],
                     **({"headers": _RETRY_AFTER} if status == 503 else {})} for status in statuses}


_BODY_ERRORS = (400, 413, 415, 422)  # any operation with a JSON body (middleware + parser + model)
_SSE_EVENT_SCHEMA = {  # OpenAPI 3.1: a text/event-stream `schema` describes one event
    "type": "object", "required": ["id", "event", "data"],
    "properties": {"id": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                   "event": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,63}$"},
                   "data": {"type": "string", "contentMediaType": "application/json"}}}


class RunIn(Strict):
    brief: FreeText = Field(min_length=1, max_length=4000)


class Run(BaseModel):
    id: UUID
    project_id: UUID
    brief: str
    state: Literal["queued", "running", "succeeded", "failed"]
    attempts: int
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _services(request: Request):
    return request.app.state.services


async def _require_project(request: Request, project_id: UUID) -> dict[str, Any]:
    project = await repository.get_project(_services(request).db, project_id)
    if project is None:
        raise ApiError(404, "not_found", "project not found")
    return project


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP. No dependencies, so a database blip never restarts instances."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], response_model=Readiness,
            responses={503: {"model": Readiness, "description": "A dependency is unavailable, or shutting down."}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: database and bucket reachable. 503 with the failing checks otherwise."""
    services = _services(request)
    checks: dict[str, str] = {}
    for name, probe in (("database", services.db.ping), ("storage", services.storage.ping)):
        try:
            await probe(timeout=3)
            checks[name] = "ok"
        except Exception as e:
            checks[name] = "unavailable"
            log.warning("readiness check failed", extra={"check": name, "error": type(e).__name__})
    if services.broker.draining:
        checks["lifecycle"] = "draining"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks,
            "gemini_configured": services.settings.gemini_configured}
    if not ready:
        body["error"] = {"code": "not_ready", "message": "dependencies unavailable: "
                         + ", ".join(k for k, v in checks.items() if v != "ok")}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.post("/projects", status_code=201, response_model=Project, tags=["projects"],
             responses=_errors(*_BODY_ERRORS, 503))
async def create_project(request: Request, body: ProjectIn) -> dict[str, Any]:
    return await repository.create_project(_services(request).db, body.name, body.description)


@router.get("/projects", response_model=ProjectList, tags=["projects"], responses=_errors(422, 503))
async def list_projects(request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                        offset: Annotated[int, Query(ge=0, le=10_000)] = 0) -> dict[str, Any]:
    items = await repository.list_projects(_services(request).db, limit, offset)
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/projects/{project_id}", response_model=Project, tags=["projects"],
            responses=_errors(404, 422, 503))
async def get_project(request: Request, project_id: UUID) -> dict[str, Any]:
    return await _require_project(request, project_id)


@router.post("/projects/{project_id}/uploads", status_code=201, response_model=UploadOut, tags=["uploads"],
             responses=_errors(*_BODY_ERRORS, 404, 503))
async def create_upload(request: Request, project_id: UUID, body: UploadIn) -> dict[str, Any]:
    """A presigned POST for one file; the browser sends the file straight to S3 with `url` and `fields`."""
    storage = _services(request).storage
    if body.size_bytes > storage.max_upload_bytes:
        raise ApiError(422, "upload_too_large", f"size_bytes is over the limit of {storage.max_upload_bytes}",
                       [{"field": "body.size_bytes", "message": "too large", "type": "too_large"}])
    await _require_project(request, project_id)
    upload = storage.presign_upload(project_id, body.content_type, body.size_bytes)
    log.info("upload presigned", extra={"project_id": str(project_id), "key": upload.key,
                                        "content_type": body.content_type, "size_bytes": body.size_bytes})
    return upload.__dict__


@router.post("/projects/{project_id}/events", status_code=201, response_model=Event, tags=["events"],
             responses=_errors(*_BODY_ERRORS, 404, 503))
async def append_event(request: Request, project_id: UUID, body: EventIn) -> dict[str, Any]:
    """Record a project event (e.g. a generation step); every open stream of the project receives it."""
    event = await repository.append_event(_services(request).db, project_id, body.type, body.data)
    if event is None:
        raise ApiError(404, "not_found", "project not found")
    return event


@router.get("/projects/{project_id}/events", tags=["events"], response_class=StreamingResponse,
            responses={200: {"description": "An SSE stream that ends itself before 120 s; each event as below, "
                                            "`data` being the Event as JSON; `: ping` comments in between",
                             "content": {"text/event-stream": {"schema": _SSE_EVENT_SCHEMA}}},
                       **_errors(400, 404, 422, 503)})
async def project_events(request: Request, project_id: UUID,
                         last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
                         last_event_id_query: Annotated[str | None, Query(alias="last_event_id")] = None,
                         ) -> StreamingResponse:
    """SSE: replays events after Last-Event-ID, then streams new ones; ends before App Runner's 120 s."""
    raw = last_event_id if last_event_id not in (None, "") else last_event_id_query
    if raw not in (None, "") and not _EVENT_ID.fullmatch(raw):
        raise ApiError(400, "bad_request", "Last-Event-ID (header or last_event_id query parameter) must be an "
                       "event id: 1 to 18 ASCII digits 0-9, with no sign, spaces or line breaks")
    await _require_project(request, project_id)
    services = _services(request)
    body = stream_events(services.db, services.broker, project_id, int(raw or 0),
                         services.settings.sse_max_stream_seconds, services.settings.sse_heartbeat_seconds)
    return StreamingResponse(body, media_type="text/event-stream", headers={
        "Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"})


@router.post("/projects/{project_id}/runs", status_code=202, response_model=Run, tags=["runs"],
             responses={**_errors(*_BODY_ERRORS, 404, 503),
                        503: {**_errors(503)[503], "description": "No run queue configured, the queue is "
                              "unreachable, or the database is unavailable."}})
async def create_run(request: Request, project_id: UUID, body: RunIn) -> dict[str, Any]:
    """Record a run and queue it for the worker; follow it on the project's event stream or poll it."""
    services = _services(request)
    if services.run_queue is None:
        raise ApiError(503, "unavailable", "runs are not enabled on this service (no run queue configured)")
    run = await runs.create_run(services.db, project_id, body.brief)
    if run is None:
        raise ApiError(404, "not_found", "project not found")
    await runs.append_run_event(services.db, run, "run.queued", "queued")  # before the worker can start it
    try:
        message_id = await services.run_queue.send(run["id"])
    except Exception as e:  # recorded as failed (never runs); the client retries with a new run
        log.error("run could not be queued", extra={"run_id": str(run["id"]), "error": type(e).__name__})
        reason = "the run queue was unavailable; submit the run again"
        await runs.record_failure(services.db, run["id"], reason, final=True)
        await runs.append_run_event(services.db, run, "run.failed", "failed", {"error": reason, "attempts": 0})
        raise ApiError(503, "unavailable", "the run queue is unavailable; retry shortly") from None
    log.info("run queued", extra={"run_id": str(run["id"]), "project_id": str(project_id),
                                  "message_id": message_id})
    return run


@router.get("/projects/{project_id}/runs/{run_id}", response_model=Run, tags=["runs"],
            responses=_errors(404, 422, 503))
async def get_run(request: Request, project_id: UUID, run_id: UUID) -> dict[str, Any]:
    run = await runs.get_run(_services(request).db, run_id, project_id)
    if run is None:
        raise ApiError(404, "not_found", "run not found")
    return run
