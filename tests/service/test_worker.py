"""Durable runs end to end: the API, real worker processes (`python -m adagency_backend worker`), real PostgreSQL
(LangGraph checkpoints included) and SQS on the local moto server. The model is the deterministic fake, which
counts its calls in a file (so calls are counted across processes) and can be held at a step by a file.

Short timeouts keep the suite quick: visibility timeout 2 s, stop timeout 5 s, 3 receives before the DLQ.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import localdev
import pytest
from harness import service_env

pytestmark = pytest.mark.slow

VISIBILITY_SECONDS = 2
STOP_TIMEOUT_SECONDS = 5
MAX_RECEIVES = 3
STEPS = ["concept", "outline", "storyboard"]
HAPPY_EVENTS = ["run.queued", "run.started", "run.step", "run.step", "run.step", "run.succeeded"]


@pytest.fixture(scope="module")
def queues(aws) -> tuple[str, str]:
    return aws.create_run_queue("runs-worker-tests", visibility_timeout=VISIBILITY_SECONDS,
                                max_receive_count=MAX_RECEIVES)


@pytest.fixture(scope="module")
def api(names, pg, aws, queues, tmp_path_factory):
    """The API with a run queue (RUN_QUEUE_URL) on top of the template's names."""
    env = service_env(names, pg, aws, "gemini-worker-test-key", RUN_QUEUE_URL=queues[0])
    proc, base = localdev.start_service(env, tmp_path_factory.mktemp("api") / "service.log")
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client
    localdev.stop_service(proc)


class Workers:
    """Starts worker processes for one test and stops whatever is left at the end."""

    def __init__(self, pg, aws, queue_url: str, model_dir: Path) -> None:
        self.pg, self.aws, self.queue_url, self.dir = pg, aws, queue_url, model_dir
        self.procs: list = []

    def start(self, name: str):
        env = {**localdev.aws_env(self.aws), **localdev.worker_values(
            self.pg, self.aws, RUN_QUEUE_URL=self.queue_url,
            WORKER_VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY_SECONDS),
            WORKER_STOP_TIMEOUT_SECONDS=str(STOP_TIMEOUT_SECONDS), WORKER_MAX_RECEIVE_COUNT=str(MAX_RECEIVES),
            WORKER_MODEL="fake", WORKER_FAKE_MODEL_DIR=str(self.dir))}
        proc = localdev.start_worker(env, self.dir / f"{name}.log")
        proc.log_path = self.dir / f"{name}.log"
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log_path.read_text(errors='replace')[-4000:]}"
                         for p in self.procs)

    def stop_all(self) -> None:
        """SIGTERM, not SIGKILL: a killed worker's long poll would still be waiting in the queue server and
        swallow the next test's message (one receive spent, as a dropped connection can on real SQS too)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            localdev.stop_service(proc, timeout=STOP_TIMEOUT_SECONDS + 10)


@pytest.fixture
def workers(pg, aws, queues, tmp_path):
    w = Workers(pg, aws, queues[0], tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def project(api) -> dict:
    resp = api.post("/projects", json={"name": "Worker campaign", "description": "runs"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def submit(api, project: dict, brief: str = "A 30-second spot for a reusable water bottle, upbeat.") -> dict:
    resp = api.post(f"/projects/{project['id']}/runs", json={"brief": brief})
    assert resp.status_code == 202, resp.text
    run = resp.json()
    assert run["state"] == "queued" and run["attempts"] == 0
    return run


def wait_for(predicate, what: str, workers: Workers, timeout: float = 30.0):
    """Poll until predicate() is truthy (a liveness bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{workers.logs()}")


def run_state(api, project: dict, run: dict) -> dict:
    resp = api.get(f"/projects/{project['id']}/runs/{run['id']}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def finished(api, project, run) -> dict | None:
    state = run_state(api, project, run)
    return state if state["state"] in ("succeeded", "failed") else None


def model_calls(model_dir: Path) -> Counter:
    path = model_dir / "calls.log"
    return Counter(line.split()[0] for line in path.read_text().splitlines()) if path.exists() else Counter()


def run_events(api, project: dict, run: dict, timeout: float = 30.0) -> list[dict]:
    """The run's events as a client sees them over SSE: from the start, reconnecting with Last-Event-ID as the
    service ends each response, until the run's final event (run.succeeded or run.failed)."""
    events: list[dict] = []
    last_id = 0
    deadline = time.monotonic() + timeout
    url = f"{api.base_url}/projects/{project['id']}/events"
    while time.monotonic() < deadline:
        with httpx.Client(timeout=10) as client, client.stream(
                "GET", url, headers={"Accept": "text/event-stream", "Last-Event-ID": str(last_id)}) as resp:
            assert resp.status_code == 200
            block: dict[str, str] = {}
            for line in resp.iter_lines():
                if line == "" and "data" in block:
                    last_id = int(block["id"])
                    doc = json.loads(block["data"])
                    if doc["data"].get("run_id") == run["id"]:
                        events.append({"id": last_id, "type": block["event"], "data": doc["data"]})
                        if block["event"] in ("run.succeeded", "run.failed"):
                            return events
                    block = {}
                elif line and not line.startswith(":"):
                    key, _, value = line.partition(":")
                    block[key] = value[1:] if value.startswith(" ") else value
    raise AssertionError(f"no final event for run {run['id']} within {timeout}s; saw {events}")


def assert_happy_events(events: list[dict]) -> None:
    assert [e["type"] for e in events] == HAPPY_EVENTS
    assert [e["data"]["step"] for e in events if e["type"] == "run.step"] == STEPS
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})  # increasing, no duplicates


def log_seconds(logs: str, message_prefix: str) -> float:
    """The worker's own clock: seconds since the epoch of its first log line whose message starts so."""
    for line in logs.splitlines():
        doc = json.loads(line) if line.startswith("{") else {"msg": ""}
        if doc["msg"].startswith(message_prefix):
            return datetime.strptime(doc["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    raise AssertionError(f"no log line {message_prefix!r} in:\n{logs}")


def checkpoints(pg, run: dict) -> int:
    return int(pg.admin_sql(f"SELECT count(*) FROM checkpoints WHERE thread_id = '{run['id']}'",
                            db=localdev.DB_NAME))


def queue_counts(aws, queue_url: str) -> tuple[int, int]:
    attrs = aws.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_worker_run_goes_from_enqueue_to_done_with_events_over_sse_in_order(api, project, workers, aws, queues, pg):
    worker = workers.start("worker")
    run = submit(api, project)
    events = run_events(api, project, run)
    assert_happy_events(events)
    done = wait_for(lambda: finished(api, project, run), "the run to finish", workers)
    assert done["state"] == "succeeded" and done["attempts"] == 1 and done["error"] is None
    assert len(done["result"]["frames"]) == len(done["result"]["scenes"]) >= 1
    assert events[-1]["data"]["result"] == done["result"]
    assert model_calls(workers.dir) == Counter({s: 1 for s in STEPS})
    wait_for(lambda: queue_counts(aws, queues[0]) == (0, 0), "the message to be deleted", workers)
    wait_for(lambda: checkpoints(pg, run) == 0, "the succeeded run's checkpoints to be deleted", workers)

    # SQS delivers at least once: the same message again is acknowledged without running anything
    aws.client("sqs").send_message(QueueUrl=queues[0], MessageBody=json.dumps({"run_id": run["id"]}))
    wait_for(lambda: queue_counts(aws, queues[0]) == (0, 0), "the duplicate to be acknowledged", workers)
    assert model_calls(workers.dir) == Counter({s: 1 for s in STEPS})
    assert run_events(api, project, run) == events
    assert run_state(api, project, run)["attempts"] == 1

    assert localdev.stop_service(worker, timeout=STOP_TIMEOUT_SECONDS + 5) == 0


def test_worker_crash_resumes_from_the_checkpoint_on_another_worker(api, project, workers):
    """kill -9 while the third node runs: the next worker gets the message after the visibility timeout,
    resumes after the last checkpoint (the first two nodes do not run again) and every event appears once."""
    (workers.dir / "block-storyboard").touch()
    first = workers.start("worker-a")
    run = submit(api, project)
    wait_for(lambda: (workers.dir / f"blocked-storyboard-{first.pid}").exists(), "the storyboard step", workers)
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert run_state(api, project, run)["state"] == "running"  # nobody recorded anything: it just died

    (workers.dir / "block-storyboard").unlink()
    workers.start("worker-b")
    done = wait_for(lambda: finished(api, project, run), "the second worker to finish the run", workers)
    assert done["state"] == "succeeded" and done["attempts"] == 2
    # concept and outline ran once (checkpointed before the crash); storyboard was cut and ran again
    assert model_calls(workers.dir) == Counter({"concept": 1, "outline": 1, "storyboard": 2})
    assert_happy_events(run_events(api, project, run))
    assert "resuming from the last checkpoint" in workers.procs[1].log_path.read_text()


@pytest.mark.parametrize("step_finishes", [True, False], ids=["step-finishes-in-time", "step-cut-at-deadline"])
def test_worker_graceful_stop_checkpoints_releases_and_the_next_worker_finishes(api, project, workers, step_finishes):
    """SIGTERM while a node runs: the process exits 0 within the stop timeout, the run is queued again and its
    message visible again; the next worker finishes it. A node that completes in the grace period is
    checkpointed (and does not run again); one that does not is cancelled and runs again on the next worker."""
    (workers.dir / "block-outline").touch()
    first = workers.start("worker-a")
    run = submit(api, project)
    wait_for(lambda: (workers.dir / f"blocked-outline-{first.pid}").exists(), "the outline step", workers)
    first.send_signal(signal.SIGTERM)
    wait_for(lambda: '"stop requested' in workers.procs[0].log_path.read_text(), "the stop to register", workers)
    if step_finishes:
        (workers.dir / "block-outline").unlink()  # the step in flight completes within the grace period
    assert first.wait(STOP_TIMEOUT_SECONDS + 15) == 0  # liveness bound: interpreter exit is slow on a busy machine
    logs = workers.procs[0].log_path.read_text()
    assert log_seconds(logs, "worker stopped") - log_seconds(logs, "stop requested") < STOP_TIMEOUT_SECONDS
    released = run_state(api, project, run)
    assert released["state"] == "queued" and released["error"] is None
    assert model_calls(workers.dir) == Counter({"concept": 1, "outline": 1})  # storyboard never started
    assert "run released for the next worker" in logs and '"worker stopped"' in logs
    assert ("did not finish within the stop timeout" in logs) is not step_finishes

    (workers.dir / "block-outline").unlink(missing_ok=True)
    workers.start("worker-b")
    done = wait_for(lambda: finished(api, project, run), "the next worker to finish the run", workers)
    assert done["state"] == "succeeded" and done["attempts"] == 2
    outline_calls = 1 if step_finishes else 2  # a cut step runs again; a finished one never does
    assert model_calls(workers.dir) == Counter({"concept": 1, "outline": outline_calls, "storyboard": 1})
    assert_happy_events(run_events(api, project, run))


def test_worker_poison_run_lands_in_the_dead_letter_queue_and_says_why(api, project, workers, aws, queues, pg):
    workers.start("worker")
    run = submit(api, project, brief="A spot the model will never accept [poison]")
    done = wait_for(lambda: finished(api, project, run), "the run to be marked failed", workers)
    assert done["state"] == "failed" and done["attempts"] == MAX_RECEIVES
    assert "the model refused this brief" in done["error"]
    assert model_calls(workers.dir) == Counter({"concept": MAX_RECEIVES})

    sqs = aws.client("sqs")

    def dead_lettered() -> list[dict]:
        return sqs.receive_message(QueueUrl=queues[1], WaitTimeSeconds=1).get("Messages", [])

    messages = wait_for(dead_lettered, "the message in the dead-letter queue", workers)
    assert [json.loads(m["Body"])["run_id"] for m in messages] == [run["id"]]
    events = run_events(api, project, run)
    assert [e["type"] for e in events] == ["run.queued", "run.started", *["run.retrying"] * (MAX_RECEIVES - 1),
                                           "run.failed"]
    assert events[-1]["data"]["error"] == done["error"]
    assert checkpoints(pg, run) > 0  # a failed run keeps its checkpoints for diagnosis


def test_worker_duplicate_delivery_during_a_run_waits_and_is_acknowledged(api, project, workers, aws, queues):
    """SQS may deliver a message twice while the first copy is being worked on: the second worker waits on the
    run's lock, then finds the run finished and acknowledges its copy. Nothing runs twice, no event repeats."""
    (workers.dir / "block-outline").touch()
    first = workers.start("worker-a")
    run = submit(api, project)
    wait_for(lambda: (workers.dir / f"blocked-outline-{first.pid}").exists(), "the outline step", workers)
    aws.client("sqs").send_message(QueueUrl=queues[0], MessageBody=json.dumps({"run_id": run["id"]}))
    workers.start("worker-b")
    wait_for(lambda: "another worker holds the run" in workers.procs[1].log_path.read_text(),
             "the second worker to wait for the run's lock", workers)
    (workers.dir / "block-outline").unlink()
    done = wait_for(lambda: finished(api, project, run), "the run to finish", workers)
    assert done["state"] == "succeeded" and done["attempts"] == 1
    wait_for(lambda: "run already finished; message acknowledged" in workers.procs[1].log_path.read_text(),
             "the duplicate to be acknowledged", workers)
    wait_for(lambda: queue_counts(aws, queues[0]) == (0, 0), "both copies to be deleted", workers)
    assert model_calls(workers.dir) == Counter({s: 1 for s in STEPS})
    assert_happy_events(run_events(api, project, run))


def test_worker_api_records_a_run_it_cannot_queue_as_failed(names, pg, aws, tmp_path):
    """The queue is unreachable when the run is submitted: 503 for the client, and the run it recorded is
    marked failed with the reason (never left queued forever)."""
    missing = aws.endpoint + "/123456789012/no-such-queue"
    env = service_env(names, pg, aws, "gemini-worker-test-key", RUN_QUEUE_URL=missing)
    proc, base = localdev.start_service(env, tmp_path / "service.log")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            project = client.post("/projects", json={"name": "Unqueued"}).json()
            resp = client.post(f"/projects/{project['id']}/runs", json={"brief": "never queued"})
    finally:
        localdev.stop_service(proc)
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "unavailable"
    rows = pg.admin_sql(f"SELECT state || '|' || error FROM runs WHERE project_id = '{project['id']}'",
                        db=localdev.DB_NAME)
    assert rows == "failed|the run queue was unavailable; submit the run again"
