"""SQL for runs (long LangGraph work executed by the worker) and the run's events on the project stream.

States: queued -> running -> succeeded | failed; a failed attempt that will be retried goes back to queued
with `error` set; a graceful stop goes back to queued. Every transition is a guarded UPDATE, so a run that
is already finished never changes again (a redelivered message for it is acknowledged and nothing runs).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from . import repository
from .db import Database

FINISHED = ("succeeded", "failed")
ERROR_MAX_CHARS = 1000
_RUN_COLUMNS = ("id, project_id, brief, state, attempts, error, result, created_at, updated_at, started_at, "
                "finished_at")


async def create_run(db: Database, project_id: UUID, brief: str) -> dict[str, Any] | None:
    """Record a queued run; None if the project does not exist."""
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            f"INSERT INTO runs (project_id, brief) SELECT id, %s FROM projects WHERE id = %s RETURNING {_RUN_COLUMNS}",
            (brief, project_id))
        return await cur.fetchone()


async def get_run(db: Database, run_id: UUID, project_id: UUID | None = None) -> dict[str, Any] | None:
    async with db.pool.connection() as conn:
        if project_id is None:
            cur = await conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,))
        else:
            cur = await conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = %s AND project_id = %s",
                                     (run_id, project_id))
        return await cur.fetchone()


async def start_attempt(db: Database, run_id: UUID) -> dict[str, Any] | None:
    """queued/running -> running, attempts + 1; None if the run is finished (or gone)."""
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE runs SET state = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now()), "
            f"updated_at = now() WHERE id = %s AND state IN ('queued', 'running') RETURNING {_RUN_COLUMNS}",
            (run_id,))
        return await cur.fetchone()


async def succeed(db: Database, run_id: UUID, result: dict[str, Any]) -> dict[str, Any] | None:
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE runs SET state = 'succeeded', result = %s, error = NULL, finished_at = now(), updated_at = now() "
            f"WHERE id = %s AND state NOT IN ('succeeded', 'failed') RETURNING {_RUN_COLUMNS}",
            (Jsonb(result), run_id))
        return await cur.fetchone()


async def record_failure(db: Database, run_id: UUID, reason: str, final: bool) -> dict[str, Any] | None:
    """Keep the attempt's failure reason; `final` marks the run failed (its message goes to the DLQ)."""
    reason = reason[:ERROR_MAX_CHARS]
    async with db.pool.connection() as conn:
        if final:
            cur = await conn.execute(
                "UPDATE runs SET state = 'failed', error = %s, finished_at = now(), updated_at = now() "
                f"WHERE id = %s AND state NOT IN ('succeeded', 'failed') RETURNING {_RUN_COLUMNS}", (reason, run_id))
        else:
            cur = await conn.execute(
                "UPDATE runs SET state = 'queued', error = %s, updated_at = now() "
                f"WHERE id = %s AND state NOT IN ('succeeded', 'failed') RETURNING {_RUN_COLUMNS}", (reason, run_id))
        return await cur.fetchone()


async def release(db: Database, run_id: UUID) -> None:
    """A graceful stop: running -> queued (the next worker resumes from the last checkpoint)."""
    async with db.pool.connection() as conn:
        await conn.execute("UPDATE runs SET state = 'queued', updated_at = now() WHERE id = %s AND state = 'running'",
                           (run_id,))


async def append_run_event(db: Database, run: dict[str, Any], type_: str, key: str,
                           data: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Append a run's event on its project's stream exactly once per (run, key), however often it is retried."""
    payload = {"run_id": str(run["id"]), **(data or {})}
    return await repository.append_event(db, run["project_id"], type_, payload,
                                         idempotency_key=f"run:{run['id']}:{key}")
