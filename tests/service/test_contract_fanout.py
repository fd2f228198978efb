"""SSE fan-out without a database: one read per project per wake-up, exact delivery, slow clients cut loose."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest
from adagency_backend import events


class FakeEvents:
    """The two repository reads the SSE code makes, over an in-memory event log; counts the reads."""

    def __init__(self, project_id: uuid.UUID) -> None:
        self.project_id = project_id
        self.rows: list[dict] = []
        self.reads = 0

    def append(self, n: int = 1) -> list[int]:
        start = self.rows[-1]["id"] if self.rows else 0
        new = [{"id": start + i, "project_id": self.project_id, "type": "t", "data": {"i": start + i},
                "created_at": datetime(2026, 1, 1, tzinfo=UTC)} for i in range(1, n + 1)]
        self.rows += new
        return [r["id"] for r in new]

    async def events_after(self, db, project_id, after_id, limit):
        self.reads += 1
        await asyncio.sleep(0)  # a real query yields to the loop
        return [r for r in self.rows if r["id"] > after_id][:limit]

    async def last_event_id(self, db, project_id):
        return self.rows[-1]["id"] if self.rows else 0


@pytest.fixture
def fake(monkeypatch) -> FakeEvents:
    store = FakeEvents(uuid.uuid4())
    monkeypatch.setattr(events.repository, "events_after", store.events_after)
    monkeypatch.setattr(events.repository, "last_event_id", store.last_event_id, raising=False)
    return store


async def _never_connects():
    await asyncio.sleep(3600)


def _ids(chunks: list) -> list[int]:
    text = "".join(c.decode() if isinstance(c, bytes) else c for c in chunks)
    return [int(m.split("\n")[0][4:]) for m in text.split("\n\n") if m.startswith("id: ")]


async def _consume(gen, out: list, stall: asyncio.Event | None = None) -> None:
    async for chunk in gen:
        out.append(chunk)
        if stall is not None and _ids(out):
            await stall.wait()  # a client that stopped reading: the server's send would block here


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)


def _stream(broker, fake: FakeEvents, out: list, last_event_id: int = 0,
            stall: asyncio.Event | None = None) -> asyncio.Task:
    """A task consuming one SSE stream of the fake project (resuming after `last_event_id`) into `out`."""
    return asyncio.create_task(_consume(events.stream_events(None, broker, fake.project_id, last_event_id, 30, 10),
                                        out, stall))


async def _open_streams(broker, fake: FakeEvents, count: int) -> tuple[list[list], list[asyncio.Task]]:
    """`count` streams of the fake project from its first event, each into a list of its own, once they are
    subscribed: (the lists, the tasks)."""
    outs: list[list] = [[] for _ in range(count)]
    tasks = [_stream(broker, fake, out) for out in outs]
    await _settle()
    return outs, tasks


def _publish(broker, fake: FakeEvents, n: int = 1) -> list[int]:
    """Store `n` events and wake the project's streams, as the LISTEN connection does on NOTIFY; their ids."""
    ids = fake.append(n)
    broker._wake(str(fake.project_id))
    return ids


async def _drain(broker, tasks: list[asyncio.Task], timeout: float) -> None:
    """Drain the broker (what shutdown does); every stream must end within `timeout` seconds."""
    broker.begin_drain()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout)


def test_contract_fanout_one_read_per_project_per_notify(fake):
    """200 streams on one project, three NOTIFYs: three reads in total, not 600; every stream gets every event."""
    async def run():
        broker = events.EventBroker(_never_connects)
        outs, tasks = await _open_streams(broker, fake, 200)
        fake.reads = 0
        posted = []
        for _ in range(3):
            posted += _publish(broker, fake)
            await _settle()
        reads = fake.reads
        await _drain(broker, tasks, 5)
        await broker.close()
        return outs, posted, reads

    outs, posted, reads = asyncio.run(run())
    assert all(_ids(out) == posted for out in outs)
    assert reads == 3, f"{reads} reads for 3 events on 200 streams"


def test_contract_fanout_slow_client_is_cut_loose_and_others_get_everything(fake, monkeypatch):
    monkeypatch.setattr(events, "FEED_WINDOW_BATCHES", 4, raising=False)

    async def run():
        broker = events.EventBroker(_never_connects)
        fast, slow, stall = [], [], asyncio.Event()
        tasks = [_stream(broker, fake, fast), _stream(broker, fake, slow, stall=stall)]
        await _settle()
        posted = []
        for _ in range(12):  # one batch each: three times the window
            posted += _publish(broker, fake)
            await _settle()
        stall.set()  # the slow client reads again: it is told to reconnect, and its stream ends
        await asyncio.wait_for(tasks[1], 5)
        await _drain(broker, tasks, 5)
        await broker.close()
        return fast, slow, posted

    fast, slow, posted = asyncio.run(run())
    assert _ids(fast) == posted
    slow_text = b"".join(c if isinstance(c, bytes) else c.encode() for c in slow)
    assert b"fell too far behind; reconnect with Last-Event-ID" in slow_text
    assert _ids(slow) == posted[:1]  # what it got before stalling; it resumes from there with Last-Event-ID


def test_contract_fanout_joins_and_resumes_anywhere_without_loss_or_duplicates(fake):
    """Streams join at random moments with random Last-Event-IDs while events flow in bursts."""
    rng = random.Random(12)

    async def run():
        broker = events.EventBroker(_never_connects)
        fake.append(5)
        streams = []  # (last_event_id, output)
        tasks = []
        for _ in range(30):
            if rng.random() < 0.5:
                _publish(broker, fake, rng.randint(1, 3))
            if rng.random() < 0.3:
                await _settle()
            last = rng.randint(0, fake.rows[-1]["id"])
            out: list = []
            streams.append((last, out))
            tasks.append(_stream(broker, fake, out, last))
            await asyncio.sleep(0)
        for _ in range(5):
            _publish(broker, fake, rng.randint(1, 4))
            await _settle()
        await _settle()
        await _drain(broker, tasks, 5)
        await broker.close()
        return streams, [r["id"] for r in fake.rows]

    streams, all_ids = asyncio.run(run())
    for last, out in streams:
        assert _ids(out) == [i for i in all_ids if i > last], last


def test_contract_fanout_drain_ends_every_stream_at_once(fake):
    async def run():
        broker = events.EventBroker(_never_connects)
        _, tasks = await _open_streams(broker, fake, 20)
        assert broker.subscriber_count() == 20
        await _drain(broker, tasks, 2)
        assert broker.subscriber_count() == 0
        await broker.close()

    asyncio.run(run())
