"""The worker (`python -m adagency_backend worker`): runs queued runs' LangGraph graphs, exactly once for users.

One message at a time per process (scale with tasks). For each message from the run queue:

1. Heartbeat: the message's visibility is extended to WORKER_VISIBILITY_TIMEOUT_SECONDS every third of it, so
   SQS redelivers it only if this process dies (or hangs) for a whole timeout.
2. A PostgreSQL advisory lock on the run: if another worker still holds it (it got the message before ours
   timed out), this one waits, then finds the run finished and acknowledges it.
3. A finished run (succeeded or failed) is acknowledged (DeleteMessage) without running anything.
4. Otherwise the graph runs with thread_id = run id and langgraph-checkpoint-postgres saving after every node
   (`durability="sync"`): a redelivered message resumes after the last checkpointed node. Events are appended
   with idempotent keys (run + step), so a repeated node never repeats its event.
5. Success: the run is recorded succeeded, then the message is deleted (never before), then the run's
   checkpoints are deleted (the result is in `runs.result`; a failed run keeps its checkpoints for diagnosis).
   Failure: the reason is recorded on the run and the message becomes visible again after a backoff; on the
   WORKER_MAX_RECEIVE_COUNT-th receive the run is recorded failed and the message is left for SQS to move to
   the dead-letter queue (redrive policy with the same maxReceiveCount).

SIGTERM (ECS stopping the task): no new message is taken; the current node may finish until shortly before
WORKER_STOP_TIMEOUT_SECONDS, the next node does not start; then the run goes back to queued, the message is made
visible again (ChangeMessageVisibility 0; re-sent instead if this was its last allowed receive) and the
process exits 0. If the node does not finish in time it is cancelled and runs again on the next worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from . import runs
from .credentials import SecretsManagerCredentials
from .db import MIGRATION_LOCK_ID, Database, migrate_with_retry
from .graph import STEPS, WorkerStopping, build_graph
from .logs import configure_logging, register_secret, request_id_var
from .model import Model, ModelError, build_model
from .runqueue import MessageError, RunMessage, RunQueue
from .settings import SettingsError, WorkerSettings, load_worker_settings

log = logging.getLogger("adagency_backend.worker")

RUN_LOCK_NAMESPACE = 7164  # pg_advisory_lock(int, int) key space of runs (apart from the one-key migration lock)
LOCK_POLL_SECONDS = 1.0
MAX_RETRY_DELAY_SECONDS = 300
IDLE_BACKOFF_SECONDS = 5.0  # after the queue or the database failed, before polling again


def stop_margin(stop_timeout: float) -> float:
    """Seconds kept, out of the stop timeout, to record the stop and release the message after the last node."""
    return min(5.0, max(1.0, stop_timeout / 4))


def poll_seconds(stop_timeout: float) -> int:
    """Long-poll wait: at most 20 s (SQS), and short enough that an idle worker stops well within its timeout."""
    return int(max(1, min(20, stop_timeout / 2)))


def retry_delay(receive_count: int, visibility_timeout: int) -> int:
    """Backoff before a failed run is delivered again: 1, 2, 4, ... s, at most the visibility timeout or 300 s."""
    return int(min(2 ** max(0, receive_count - 1), visibility_timeout, MAX_RETRY_DELAY_SECONDS))


def failure_reason(exc: BaseException) -> str:
    """What the run's state shows: our own messages verbatim, anything else by type only (details go to logs)."""
    if isinstance(exc, ModelError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); see the worker's logs"


class Worker:
    def __init__(self, settings: WorkerSettings, db: Database, queue: RunQueue, model: Model,
                 checkpointer: AsyncPostgresSaver) -> None:
        self.settings, self.db, self.queue, self.model, self.checkpointer = settings, db, queue, model, checkpointer
        self.stopping = asyncio.Event()
        self._deadline: float | None = None
        self._lease_lock = asyncio.Lock()  # orders the heartbeat against the message's final visibility/delete
        self._settled = False  # the current message got its final answer: the heartbeat must not touch it
        self.processed = 0

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self.stopping.is_set():
            loop = asyncio.get_running_loop()
            self._deadline = loop.time() + self.settings.stop_timeout_seconds \
                - stop_margin(self.settings.stop_timeout_seconds)
            log.info("stop requested; finishing the current step",
                     extra={"stop_timeout_s": self.settings.stop_timeout_seconds})
            self.stopping.set()

    async def run(self) -> None:
        """Receive and handle messages until a stop is requested."""
        wait = poll_seconds(self.settings.stop_timeout_seconds)
        while not self.stopping.is_set():
            try:
                messages = await self.queue.receive(wait, self.settings.visibility_timeout_seconds)
            except Exception as e:  # network, throttling, permissions: keep trying, visibly
                log.error("cannot receive from the run queue", extra={"error": f"{type(e).__name__}: {e}"})
                await self._sleep_unless_stopping(IDLE_BACKOFF_SECONDS)
                continue
            for message in messages:
                if self.stopping.is_set():  # received while stopping: give it straight back
                    await self._release_message(message)
                    continue
                try:
                    await self.handle(message)
                except Exception:
                    log.exception("message handling failed; SQS redelivers it after the visibility timeout",
                                  extra={"message_id": message.message_id})
                    await self._sleep_unless_stopping(IDLE_BACKOFF_SECONDS)
                finally:
                    request_id_var.set("-")

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    # -- one message ---------------------------------------------------------------------------------------------
    async def handle(self, message: RunMessage) -> None:
        try:
            run_id = message.run_id()
        except MessageError as e:  # cannot be tied to a run: leave it; after N receives it lands in the DLQ
            log.error("unreadable message left for the dead-letter queue",
                      extra={"message_id": message.message_id, "reason": str(e)})
            return
        request_id_var.set(f"run:{run_id}")
        self._settled = False
        heartbeat = asyncio.create_task(self._heartbeat(message), name="visibility-heartbeat")
        try:
            async with self._run_lock(run_id) as locked:
                if not locked:  # stopping while another worker held the run
                    await self._release_message(message)
                    return
                await self._handle_locked(message, run_id)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _handle_locked(self, message: RunMessage, run_id: UUID) -> None:
        run = await runs.get_run(self.db, run_id)
        if run is None:
            log.warning("message for an unknown run acknowledged", extra={"message_id": message.message_id})
            await self._settle()
            await self.queue.delete(message)
            return
        if run["state"] in runs.FINISHED:  # delivered again after it finished: acknowledge, run nothing
            await self._announce_finished(run)
            await self._settle()
            await self.queue.delete(message)
            if run["state"] == "succeeded":
                await self._forget_checkpoints(run_id)
            log.info("run already finished; message acknowledged", extra={"state": run["state"]})
            return
        run = await runs.start_attempt(self.db, run_id)
        if run is None:  # finished between the two statements (cannot happen under the lock; be safe)
            await self._settle()
            await self.queue.delete(message)
            return
        log.info("run started", extra={"attempt": run["attempts"], "receive_count": message.receive_count})
        await runs.append_run_event(self.db, run, "run.started", "started")

        outcome = await self._execute_until_stop(run)
        if isinstance(outcome, dict):
            finished = await runs.succeed(self.db, run_id, outcome) or await runs.get_run(self.db, run_id)
            await self._announce_finished(finished)
            await self._settle()
            await self.queue.delete(message)  # only now that the run is recorded finished
            await self._forget_checkpoints(run_id)
            self.processed += 1
            log.info("run succeeded", extra={"attempt": run["attempts"]})
        elif isinstance(outcome, (WorkerStopping, asyncio.CancelledError)):
            await runs.release(self.db, run_id)
            await self._release_message(message)
            log.info("run released for the next worker", extra={"after": type(outcome).__name__})
        else:
            await self._record_failure(message, run, outcome)

    async def _execute_until_stop(self, run: dict[str, Any]) -> dict[str, Any] | BaseException:
        """Run (or resume) the graph; on a stop, let the current node finish until the deadline, then cancel."""
        task = asyncio.create_task(self._execute(run), name=f"run-{run['id']}")
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                remaining = max(0.0, (self._deadline or 0) - asyncio.get_running_loop().time())
                await asyncio.wait({task}, timeout=remaining)
            if not task.done():
                log.warning("the current step did not finish within the stop timeout; cancelling it")
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                return asyncio.CancelledError()
        finally:
            stop.cancel()
        if task.cancelled():
            return asyncio.CancelledError()
        exc = task.exception()
        return exc if exc is not None else task.result()

    async def _execute(self, run: dict[str, Any]) -> dict[str, Any]:
        config = {"configurable": {"thread_id": str(run["id"])}}

        async def on_step(step: str, output: dict[str, Any]) -> None:
            await runs.append_run_event(self.db, run, "run.step", f"step:{step}",
                                        {"step": step, "index": STEPS.index(step) + 1, "steps": len(STEPS),
                                         "output": output})
            log.info("step done", extra={"step": step})

        graph = build_graph(self.model, on_step, self.stopping.is_set).compile(checkpointer=self.checkpointer)
        resume = await self.checkpointer.aget_tuple(config) is not None
        if resume:
            log.info("resuming from the last checkpoint")
        state = await graph.ainvoke(None if resume else {"brief": run["brief"]}, config, durability="sync")
        return {"concept": state["concept"], "scenes": state["scenes"], "frames": state["frames"]}

    async def _record_failure(self, message: RunMessage, run: dict[str, Any], exc: BaseException) -> None:
        reason = failure_reason(exc)
        final = message.receive_count >= self.settings.max_receive_count
        log.error("run attempt failed", exc_info=exc, extra={
            "reason": reason, "receive_count": message.receive_count, "final": final})
        recorded = await runs.record_failure(self.db, run["id"], reason, final)
        await self._settle()
        if final:
            await runs.append_run_event(self.db, run, "run.failed", "failed",
                                        {"error": reason, "attempts": run["attempts"]})
            # visible now: SQS moves it to the dead-letter queue instead of delivering it again
            await self.queue.change_visibility(message, 0)
        else:
            delay = retry_delay(message.receive_count, self.settings.visibility_timeout_seconds)
            await runs.append_run_event(self.db, run, "run.retrying", f"attempt:{run['attempts']}:failed",
                                        {"error": reason, "attempt": run["attempts"], "retry_in_s": delay})
            await self.queue.change_visibility(message, delay)
        if recorded is None:
            log.warning("run was already finished when its failure was recorded")

    async def _forget_checkpoints(self, run_id: UUID) -> None:
        """A succeeded run's result is in `runs`; its checkpoints only cost storage. Failed runs keep theirs."""
        try:
            await self.checkpointer.adelete_thread(str(run_id))
        except Exception as e:  # harmless: they are deleted the next time the run's message shows up, or never
            log.warning("could not delete the run's checkpoints", extra={"error": type(e).__name__})

    async def _announce_finished(self, run: dict[str, Any]) -> None:
        """The final event, appended once however often this is called (covers a crash just after finishing)."""
        if run["state"] == "succeeded":
            await runs.append_run_event(self.db, run, "run.succeeded", "succeeded", {"result": run["result"]})
        elif run["state"] == "failed":
            await runs.append_run_event(self.db, run, "run.failed", "failed",
                                        {"error": run["error"], "attempts": run["attempts"]})

    async def _release_message(self, message: RunMessage) -> None:
        """Give the message back now; at its last allowed receive send a fresh copy, so a stop never dead-letters it."""
        await self._settle()
        try:
            if message.receive_count >= self.settings.max_receive_count:
                await self.queue.resend(message)
            else:
                await self.queue.change_visibility(message, 0)
        except Exception as e:  # it becomes visible anyway when the visibility timeout ends
            log.warning("could not release the message", extra={"error": f"{type(e).__name__}: {e}"})

    async def _heartbeat(self, message: RunMessage) -> None:
        period = max(0.5, self.settings.visibility_timeout_seconds / 3)
        while True:
            await asyncio.sleep(period)
            async with self._lease_lock:
                if self._settled:
                    return
                try:
                    await self.queue.change_visibility(message, self.settings.visibility_timeout_seconds)
                except Exception as e:  # e.g. another worker received it meanwhile (the run lock keeps us apart)
                    log.warning("visibility heartbeat failed", extra={"error": f"{type(e).__name__}: {e}"})

    async def _settle(self) -> None:
        """From now on the heartbeat leaves the message alone (waits for a heartbeat call in flight)."""
        async with self._lease_lock:
            self._settled = True

    @contextlib.asynccontextmanager
    async def _run_lock(self, run_id: UUID) -> AsyncIterator[bool]:
        """A session advisory lock on the run (released by PostgreSQL if this process dies); False if stopping."""
        conn = await self.db.connect(autocommit=True)
        async with conn:
            while True:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                         (RUN_LOCK_NAMESPACE, str(run_id)))
                if (await cur.fetchone())[0]:
                    break
                if self.stopping.is_set():
                    yield False
                    return
                log.info("another worker holds the run; waiting")
                await self._sleep_unless_stopping(LOCK_POLL_SECONDS)
            try:
                yield True
            finally:
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                                       (RUN_LOCK_NAMESPACE, str(run_id)))


async def setup_checkpointer(db: Database) -> None:
    """Create/upgrade langgraph-checkpoint-postgres's tables, one worker at a time (the migrations' lock)."""
    conn = await db.connect(autocommit=True, prepare_threshold=0, row_factory=dict_row)
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            await AsyncPostgresSaver(conn).setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))


async def serve(settings: WorkerSettings) -> int:
    base = settings.base
    register_secret(base.gemini_api_key)
    db = Database(base, SecretsManagerCredentials(base.db_secret_arn, base.region), max_size=2)
    applied = await migrate_with_retry(db)
    await setup_checkpointer(db)
    await db.open()
    # the checkpointer wants autocommit connections without prepared statements; same rotating credentials
    checkpoints = AsyncConnectionPool(
        db.conninfo, connection_class=db.connection_class, min_size=0, max_size=2, open=False, timeout=15,
        max_idle=300, max_lifetime=3600, check=AsyncConnectionPool.check_connection, name="checkpoints",
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    await checkpoints.open(wait=False)
    model = build_model(settings)
    worker = Worker(settings, db, RunQueue(settings.queue_url, base.region), model, AsyncPostgresSaver(checkpoints))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    log.info("worker started", extra={
        "environment": base.environment, "model": model.name, "migrations_applied": applied, "pid": os.getpid(),
        "visibility_timeout_s": settings.visibility_timeout_seconds, "max_receive_count": settings.max_receive_count,
        "stop_timeout_s": settings.stop_timeout_seconds, "gemini_configured": base.gemini_configured})
    try:
        await worker.run()
    finally:
        await model.close()
        await checkpoints.close(timeout=5)
        await db.close()
        log.info("worker stopped", extra={"runs_processed": worker.processed})
    return 0


def main() -> int:
    configure_logging("INFO")
    try:
        settings = load_worker_settings(os.environ)
    except SettingsError as e:
        log.error("invalid configuration", extra={"reason": str(e)})
        return 2
    configure_logging(settings.base.log_level)
    return asyncio.run(serve(settings))
