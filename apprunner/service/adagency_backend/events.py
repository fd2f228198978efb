"""Server-Sent Events that live inside App Runner's 120 s request limit without losing anything.

- Events are rows in PostgreSQL with increasing ids; each SSE message carries `id:`.
- A stream first replays events with id > Last-Event-ID, then waits for new ones, sends `: ping`
  comments every heartbeat interval, and ends itself after SSE_MAX_STREAM_SECONDS (< 120 s). The
  browser's EventSource reconnects on its own and sends Last-Event-ID, so the next response resumes
  exactly where the last one stopped (also on another instance).
- One LISTEN connection per process (started while anyone is subscribed) wakes the streams of a project
  when an event is committed; streams hold no database connection while they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import PoolTimeout

from . import repository
from .db import Database

log = logging.getLogger(__name__)

REPLAY_BATCH = 500
RECONNECT_DELAY_MS = 1000  # `retry:` hint for EventSource
LISTENER_LINGER_SECONDS = 30  # keep LISTENing this long after the last subscriber leaves


class EventBroker:
    """Fans PostgreSQL NOTIFY wake-ups out to the streams subscribed to a project."""

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection]]) -> None:
        self._connect = connect
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task | None = None
        self._stop_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.draining = False
        self.listening = False

    def bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, project_id: UUID) -> AsyncIterator[asyncio.Event]:
        wake = asyncio.Event()
        key = str(project_id)
        self._subscribers.setdefault(key, set()).add(wake)
        self._ensure_listener()
        try:
            yield wake
        finally:
            subs = self._subscribers.get(key)
            if subs is not None:
                subs.discard(wake)
                if not subs:
                    del self._subscribers[key]
            if not self._subscribers and self._listener is not None and self._stop_timer is None:
                self._stop_timer = asyncio.get_running_loop().call_later(LISTENER_LINGER_SECONDS,
                                                                          self._stop_if_idle)

    def _wake(self, key: str | None) -> None:
        targets = self._subscribers.values() if key is None else [self._subscribers.get(key, ())]
        for subs in targets:
            for wake in subs:
                wake.set()

    def _ensure_listener(self) -> None:
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None
        if self._listener is None or self._listener.done():
            # a fresh context: the listener outlives the request that started it (and its request id)
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="event-listener",
                                                                     context=contextvars.Context())

    def _stop_if_idle(self) -> None:
        self._stop_timer = None
        if not self._subscribers and self._listener is not None:
            self._listener.cancel()
            self._listener = None

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await self._connect()
                async with conn:
                    await conn.execute(f"LISTEN {repository.EVENTS_CHANNEL}")
                    self.listening, delay = True, 0.5
                    self._wake(None)  # anything committed before LISTEN took effect is picked up now
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep the streams alive; they still end and resume on their own
                log.warning("event listener lost its connection; reconnecting",
                            extra={"error": type(e).__name__, "retry_in_s": delay})
            finally:
                self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    def begin_drain(self) -> None:
        """Shutdown started: end every stream now so clients reconnect to a healthy instance."""
        self.draining = True
        self._wake(None)

    def begin_drain_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.begin_drain)

    async def close(self) -> None:
        self.begin_drain()
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None


def format_event(event: dict[str, Any]) -> str:
    payload = {"id": event["id"], "type": event["type"], "data": event["data"],
               "created_at": event["created_at"].isoformat()}
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def stream_events(db: Database, broker: EventBroker, project_id: UUID, last_event_id: int,
                        max_seconds: float, heartbeat_seconds: float) -> AsyncIterator[str]:
    """The body of one SSE response: replay, then live events and heartbeats, then end before the limit."""
    deadline = time.monotonic() + max_seconds
    yield f"retry: {RECONNECT_DELAY_MS}\n\n"
    try:
        async with contextlib.aclosing(_events_until(db, broker, project_id, last_event_id, deadline,
                                                     heartbeat_seconds)) as chunks:
            async for chunk in chunks:
                yield chunk
    except (psycopg.Error, PoolTimeout) as e:  # end cleanly: the client resumes from its Last-Event-ID
        log.warning("event stream ended early: database unavailable", extra={"error": type(e).__name__})
    yield ": stream ends; reconnect with Last-Event-ID\n\n"


async def _events_until(db: Database, broker: EventBroker, project_id: UUID, last_event_id: int,
                        deadline: float, heartbeat_seconds: float) -> AsyncIterator[str]:
    async with broker.subscribe(project_id) as wake:
        next_ping = time.monotonic() + heartbeat_seconds
        pending = True  # replay first
        while not broker.draining:
            if pending:
                wake.clear()
                rows = await repository.events_after(db, project_id, last_event_id, REPLAY_BATCH)
                for row in rows:
                    last_event_id = row["id"]
                    yield format_event(row)
                if rows:
                    next_ping = time.monotonic() + heartbeat_seconds
                pending = len(rows) == REPLAY_BATCH
                if pending:
                    continue
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_ping:
                yield ": ping\n\n"
                next_ping = now + heartbeat_seconds
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(next_ping, deadline) - now):
                    await wake.wait()
                    pending = True
