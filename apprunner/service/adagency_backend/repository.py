"""SQL for projects and project events (plain parameterised queries; rows come back as dicts)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from .db import Database
from .jsonsafe import check_storable

EVENTS_CHANNEL = "project_events"  # NOTIFY channel; payload = project id
_PROJECT_COLUMNS = "id, name, description, created_at"
_EVENT_COLUMNS = "id, project_id, type, data, created_at"


async def create_project(db: Database, name: str, description: str) -> dict[str, Any]:
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            f"INSERT INTO projects (name, description) VALUES (%s, %s) RETURNING {_PROJECT_COLUMNS}",
            (name, description))
        return await cur.fetchone()


async def list_projects(db: Database, limit: int, offset: int) -> list[dict[str, Any]]:
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_PROJECT_COLUMNS} FROM projects ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
            (limit, offset))
        return await cur.fetchall()


async def get_project(db: Database, project_id: UUID) -> dict[str, Any] | None:
    async with db.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = %s", (project_id,))
        return await cur.fetchone()


async def append_event(db: Database, project_id: UUID, type_: str, data: dict[str, Any], *,
                       idempotency_key: str | None = None) -> dict[str, Any] | None:
    """Insert an event and NOTIFY listeners; None if the project does not exist.

    Raises jsonsafe.UnstorableJson (a ValueError) before touching the database if `data` holds what
    PostgreSQL jsonb cannot store (NUL, lone surrogates, NaN/Infinity, nesting over jsonsafe.MAX_DEPTH).
    Callers other than the API (workers) get the same guarantee: nothing half-stored, no 500.
    The project row is locked first, so one project's events commit in id order: a reader that has seen
    id N can never later find a committed id < N (which a client resuming from N would miss).
    With `idempotency_key` (at most 200 characters, unique per project) a repeated append inserts
    nothing, notifies nobody and returns the event recorded the first time.
    """
    check_storable(data)
    async with db.pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT id FROM projects WHERE id = %s FOR UPDATE", (project_id,))
        if await cur.fetchone() is None:
            return None
        cur = await conn.execute(
            "INSERT INTO project_events (project_id, type, data, idempotency_key) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (project_id, idempotency_key) DO NOTHING RETURNING {_EVENT_COLUMNS}",
            (project_id, type_, Jsonb(data), idempotency_key))
        event = await cur.fetchone()
        if event is None:  # the key was used before: return that event, wake nobody
            cur = await conn.execute(f"SELECT {_EVENT_COLUMNS} FROM project_events "
                                     "WHERE project_id = %s AND idempotency_key = %s", (project_id, idempotency_key))
            return await cur.fetchone()
        await conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, str(project_id)))
        return event


async def events_after(db: Database, project_id: UUID, after_id: int, limit: int) -> list[dict[str, Any]]:
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM project_events WHERE project_id = %s AND id > %s ORDER BY id LIMIT %s",
            (project_id, after_id, limit))
        return await cur.fetchall()


async def last_event_id(db: Database, project_id: UUID) -> int:
    """The id of the project's newest committed event, 0 if it has none (where a fan-out reader starts)."""
    async with db.pool.connection() as conn:
        cur = await conn.execute("SELECT coalesce(max(id), 0) AS id FROM project_events WHERE project_id = %s",
                                 (project_id,))
        return (await cur.fetchone())["id"]
