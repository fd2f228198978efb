"""Server-Sent Events that live inside App Runner's 120 s request limit without losing anything.

- Events are rows in PostgreSQL with increasing ids; each SSE message carries `id:`.
- A stream first replays events with id > Last-Event-ID, then waits for new ones, sends `: ping`
  comments every heartbeat interval, and ends itself after SSE_MAX_STREAM_SECONDS (< 120 s). The
  browser's EventSource reconnects on its own and sends Last-Event-ID, so the next response resumes
  exactly where the last one stopped (also on another instance).
- One LISTEN connection per process (started while anyone is subscribed) wakes the project's feed
  when an event is committed; streams hold no database connection while they wait.
- Fan-out: each project with open streams has one ProjectFeed, whose single reader runs one query per
  wake-up and formats each event once; every stream of the project takes the batches from the feed's
  bounded window. So a NOTIFY costs one query per project, not one per stream. A stream whose client
  cannot keep up (falls more than FEED_WINDOW_BATCHES / FEED_WINDOW_BYTES behind) is ended with a
  comment and resumes with Last-Event-ID; it never holds up the reader or the other streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
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
FEED_WINDOW_BATCHES = 256  # batches a feed keeps for streams that are behind; further behind = too slow
FEED_WINDOW_BYTES = 4 * 1024 * 1024  # ... or this many bytes of formatted events
FEED_RETRY_MAX_SECONDS = 5.0  # a feed whose query failed retries with backoff up to this
TOO_SLOW_COMMENT = b": this client fell too far behind; reconnect with Last-Event-ID\n\n"


@dataclass(frozen=True)
class Batch:
    """Every event of one project with `after` < id <= `last`, each formatted once as an SSE message."""

    after: int
    last: int
    events: tuple[tuple[int, bytes], ...]
    size: int  # bytes of the formatted events


class ProjectFeed:
    """One reader per project: reads each new batch of events once and keeps recent batches for the streams.

    Batches are numbered (seq); a stream remembers the next seq it wants and takes `since(seq)`.
    Consecutive batches chain (`after` of one is `last` of the one before), so a stream that has sent
    up to the first batch's `after` misses nothing. The window is bounded in batches and bytes.
    """

    def __init__(self, db: Database, project_id: UUID) -> None:
        self.db, self.project_id = db, project_id
        self.position: int | None = None  # newest event id read; None until the reader first ran
        self.first_seq = 0  # seq of self._batches[0]
        self.next_seq = 0  # seq the next published batch gets
        self._batches: list[Batch] = []
        self._bytes = 0
        # one future per waiting stream, in a set: waking or leaving is O(1) per stream (asyncio.Event
        # keeps its waiters in a deque and removes each in O(n), which is O(n^2) per wake-up at n streams)
        self._waiters: set[asyncio.Future] = set()
        self._dirty = asyncio.Event()
        self._dirty.set()  # read at start: learn the position (and anything already pending)
        self.subscribers = 0
        self.task: asyncio.Task | None = None

    def mark_dirty(self) -> None:
        self._dirty.set()

    def wake_streams(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until the next publish (or drain), or `timeout` seconds."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    def since(self, seq: int) -> list[Batch] | None:
        """Batches numbered seq and later; None if seq has already left the window (the stream is too slow)."""
        if seq < self.first_seq:
            return None
        return self._batches[seq - self.first_seq:]

    def publish(self, rows: list[dict[str, Any]]) -> None:
        events = tuple((row["id"], format_event(row).encode()) for row in rows)
        after = self.position if self.position is not None else 0
        batch = Batch(after, events[-1][0], events, sum(len(text) for _, text in events))
        self._batches.append(batch)
        self._bytes += batch.size
        self.next_seq += 1
        self.position = batch.last
        drop = 0
        while len(self._batches) - drop > FEED_WINDOW_BATCHES or \
                (self._bytes > FEED_WINDOW_BYTES and len(self._batches) - drop > 1):
            self._bytes -= self._batches[drop].size
            drop += 1
        if drop:
            del self._batches[:drop]
            self.first_seq += drop
        self.wake_streams()

    async def run(self) -> None:
        """The reader: after each wake-up, read everything after `position` (pages of REPLAY_BATCH), publish."""
        delay = 0.5
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                if self.position is None:
                    self.position = await repository.last_event_id(self.db, self.project_id)
                while True:
                    rows = await repository.events_after(self.db, self.project_id, self.position, REPLAY_BATCH)
                    if rows:
                        self.publish(rows)
                    if len(rows) < REPLAY_BATCH:
                        break
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as e:  # database blip (or a bug): keep the streams, retry; nothing is skipped
                log.warning("project feed could not read events; retrying",
                            extra={"error": type(e).__name__, "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, FEED_RETRY_MAX_SECONDS)
                self._dirty.set()


class EventBroker:
    """Routes PostgreSQL NOTIFY wake-ups to the feed of the project; one feed per project with open streams."""

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection]]) -> None:
        self._connect = connect
        self._subscribers: dict[str, ProjectFeed] = {}
        self._listener: asyncio.Task | None = None
        self._stop_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.draining = False
        self.listening = False

    def bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def subscriber_count(self) -> int:
        return sum(feed.subscribers for feed in self._subscribers.values())

    def feed_count(self) -> int:
        return len(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscribe(self, db: Database, project_id: UUID) -> AsyncIterator[ProjectFeed]:
        """The project's feed (started on first use, stopped when its last stream leaves)."""
        key = str(project_id)
        feed = self._subscribers.get(key)
        if feed is None:
            feed = self._subscribers[key] = ProjectFeed(db, project_id)
            # a fresh context: the reader outlives the request that started it (and its request id)
            feed.task = asyncio.get_running_loop().create_task(feed.run(), name=f"event-feed-{key}",
                                                               context=contextvars.Context())
        feed.subscribers += 1
        self._ensure_listener()
        try:
            yield feed
        finally:
            feed.subscribers -= 1
            if feed.subscribers == 0 and self._subscribers.get(key) is feed:
                del self._subscribers[key]
                if feed.task is not None:
                    feed.task.cancel()
            if not self._subscribers and self._listener is not None and self._stop_timer is None:
                self._stop_timer = asyncio.get_running_loop().call_later(LISTENER_LINGER_SECONDS,
                                                                          self._stop_if_idle)

    def _wake(self, key: str | None) -> None:
        """A NOTIFY for project `key` (None: every project, e.g. after LISTEN (re)connected)."""
        if key is None:
            for feed in self._subscribers.values():
                feed.mark_dirty()
        elif (feed := self._subscribers.get(key)) is not None:
            feed.mark_dirty()

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
        for feed in self._subscribers.values():
            feed.wake_streams()

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
        for feed in self._subscribers.values():
            if feed.task is not None:
                feed.task.cancel()


def format_event(event: dict[str, Any]) -> str:
    payload = {"id": event["id"], "type": event["type"], "data": event["data"],
               "created_at": event["created_at"].isoformat()}
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def stream_events(db: Database, broker: EventBroker, project_id: UUID, last_event_id: int,
                        max_seconds: float, heartbeat_seconds: float) -> AsyncIterator[bytes]:
    """The body of one SSE response: replay, then live events and heartbeats, then end before the limit."""
    deadline = time.monotonic() + max_seconds
    yield f"retry: {RECONNECT_DELAY_MS}\n\n".encode()
    try:
        async with contextlib.aclosing(_events_until(db, broker, project_id, last_event_id, deadline,
                                                     heartbeat_seconds)) as chunks:
            async for chunk in chunks:
                yield chunk
    except (psycopg.Error, PoolTimeout) as e:  # end cleanly: the client resumes from its Last-Event-ID
        log.warning("event stream ended early: database unavailable", extra={"error": type(e).__name__})
    yield b": stream ends; reconnect with Last-Event-ID\n\n"


async def _events_until(db: Database, broker: EventBroker, project_id: UUID, last_event_id: int,
                        deadline: float, heartbeat_seconds: float) -> AsyncIterator[bytes]:
    async with broker.subscribe(db, project_id) as feed:
        seq = feed.next_seq  # batches published from now on; anything older comes from the replay
        sent = last_event_id  # every event with id <= sent is with the client
        next_ping = time.monotonic() + heartbeat_seconds
        # replay from the database, unless the feed has already read no further than the client has seen
        replay = feed.position is None or sent < feed.position
        while not broker.draining:
            if replay:
                rows = await repository.events_after(db, project_id, sent, REPLAY_BATCH)
                if rows:
                    sent = rows[-1]["id"]
                    yield b"".join(format_event(row).encode() for row in rows)
                    next_ping = time.monotonic() + heartbeat_seconds
                replay = len(rows) == REPLAY_BATCH
                continue
            batches = feed.since(seq)
            if batches is None:
                log.info("event stream ended: client too slow", extra={"project_id": str(project_id)})
                yield TOO_SLOW_COMMENT
                return
            if batches:
                out: list[bytes] = []
                for batch in batches:
                    if batch.after > sent:  # events between what was sent and this batch: read them first
                        replay = True
                        break
                    seq += 1
                    out.extend(text for event_id, text in batch.events if event_id > sent)
                    sent = max(sent, batch.last)
                if out:
                    yield b"".join(out)
                    next_ping = time.monotonic() + heartbeat_seconds
                continue
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_ping:
                yield b": ping\n\n"
                next_ping = now + heartbeat_seconds
                continue
            await feed.wait(min(next_ping, deadline) - now)
