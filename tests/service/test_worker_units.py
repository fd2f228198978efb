"""Fast checks of the worker's pieces (no servers): its settings and contract names, the Gemini client against a
mock transport (no test calls the internet), the fake model, the graph with an in-memory checkpointer, the
runs API's input checks and its answer when no run queue is configured."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from adagency_backend import model as model_mod
from adagency_backend.graph import STEPS, WorkerStopping, build_graph
from adagency_backend.model import FakeModel, GeminiModel, ModelError, clean_text
from adagency_backend.runqueue import MessageError, RunMessage, message_body
from adagency_backend.settings import (
    RUNS_VARIABLES,
    WORKER_SECRETS,
    WORKER_VARIABLES,
    SettingsError,
    load_settings,
    load_worker_settings,
)
from adagency_backend.worker import failure_reason, poll_seconds, retry_delay, stop_margin
from langgraph.checkpoint.memory import InMemorySaver

from generator import contract

KEY = "AIza-worker-unit-secret"
WORKER_ENV = {
    "APP_ENVIRONMENT": "dev", "APP_REGION": "eu-west-1", "DB_HOST": "db.cluster-x.eu-west-1.rds.amazonaws.com",
    "DB_PORT": "5432", "DB_NAME": "app", "DB_SSLMODE": "require", "CONTENT_BUCKET": "acme-dev-content",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-abc-123",
    "RUN_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/acme-dev-runs",
    "WORKER_VISIBILITY_TIMEOUT_SECONDS": "300", "WORKER_STOP_TIMEOUT_SECONDS": "60", "WORKER_MAX_RECEIVE_COUNT": "5",
    "GEMINI_API_KEY": KEY,
}


def test_worker_contract_names_match_the_generator_contract():
    assert set(WORKER_VARIABLES) == set(contract.WORKER_VARIABLES)
    assert set(WORKER_SECRETS) == set(contract.WORKER_SECRETS)
    assert set(RUNS_VARIABLES) == set(contract.RUNS_API_VARIABLES)
    assert set(WORKER_ENV) == set(contract.WORKER_VARIABLES) | set(contract.WORKER_SECRETS)
    assert contract.WORKER_COMMAND == ("worker",)


def test_worker_settings_load_from_the_worker_names_only():
    s = load_worker_settings(WORKER_ENV)
    assert (s.visibility_timeout_seconds, s.stop_timeout_seconds, s.max_receive_count) == (300, 60, 5)
    assert s.queue_url == WORKER_ENV["RUN_QUEUE_URL"] and s.model == "gemini" and s.base.gemini_configured
    assert KEY not in repr(s)


@pytest.mark.parametrize("changes, message", [
    ({"RUN_QUEUE_URL": None, "WORKER_MAX_RECEIVE_COUNT": None}, "RUN_QUEUE_URL, WORKER_MAX_RECEIVE_COUNT"),
    ({"WORKER_STOP_TIMEOUT_SECONDS": "121"}, "WORKER_STOP_TIMEOUT_SECONDS"),  # ECS stopTimeout is at most 120 s
    ({"WORKER_VISIBILITY_TIMEOUT_SECONDS": "43201"}, "WORKER_VISIBILITY_TIMEOUT_SECONDS"),  # SQS: 12 h at most
    ({"WORKER_MAX_RECEIVE_COUNT": "0"}, "WORKER_MAX_RECEIVE_COUNT"),
    ({"RUN_QUEUE_URL": "http://sqs.eu-west-1.amazonaws.com/1/q"}, "RUN_QUEUE_URL"),
    ({"WORKER_MODEL": "gpt"}, "WORKER_MODEL"),
    ({"DB_SSLMODE": "disable"}, "DB_SSLMODE"),
], ids=["missing", "stop-over-ecs-limit", "visibility-over-sqs-limit", "no-receives", "plain-http-queue",
        "unknown-model", "plaintext-db"])
def test_worker_settings_refuse_bad_values(changes, message):
    env = {k: v for k, v in {**WORKER_ENV, **changes}.items() if v is not None}
    with pytest.raises(SettingsError, match=message) as err:
        load_worker_settings(env)
    assert KEY not in str(err.value)


def test_worker_timing_rules():
    assert [retry_delay(n, 300) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(20, 30) == 30 and retry_delay(30, 43_200) == 300
    assert poll_seconds(120) == 20 and poll_seconds(4) == 2 and poll_seconds(1) == 1
    assert stop_margin(120) == 5 and stop_margin(4) == 1 and 0 < stop_margin(5) < 5


def test_worker_failure_reason_shows_our_messages_only():
    assert failure_reason(ModelError("outline: Gemini answered HTTP 429")) == "outline: Gemini answered HTTP 429"
    reason = failure_reason(KeyError(f"token {KEY}"))
    assert reason.startswith("internal error (KeyError)") and KEY not in reason


def test_worker_message_body_round_trip_and_bad_bodies():
    run_id = uuid.uuid4()
    assert RunMessage("m", "h", 1, message_body(run_id)).run_id() == run_id
    for body in ("", "not json", json.dumps({"run": str(run_id)}), json.dumps({"run_id": "x"}), "[]"):
        with pytest.raises(MessageError):
            RunMessage("m", "h", 1, body).run_id()


def _gemini(handler) -> GeminiModel:
    return GeminiModel(KEY, "gemini-2.5-flash", transport=httpx.MockTransport(handler))


def _answer(text: str) -> httpx.Response:
    return httpx.Response(200, json={"candidates": [{"content": {"parts": [{"text": text}]}}]})


def test_worker_gemini_request_shape_and_key_in_header_only(monkeypatch):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer("A bold concept\x00 with a bottle")

    text = asyncio.run(_gemini(handler).generate("concept", "brief text"))
    assert text == "A bold concept with a bottle"  # NUL removed: jsonb refuses \u0000
    (req,) = seen
    assert req.method == "POST" and req.url.host == "generativelanguage.googleapis.com"
    assert req.url.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == KEY and KEY not in str(req.url)
    assert json.loads(req.content)["contents"][0]["parts"][0]["text"] == "brief text"


def test_worker_gemini_retries_throttling_then_fails_with_a_safe_reason(monkeypatch):
    monkeypatch.setattr(model_mod, "GEMINI_RETRY_DELAYS", (0.0, 0.0))
    statuses = iter([429, 503, 200])
    ok = asyncio.run(_gemini(lambda r: _answer("fine") if next(statuses) == 200 else httpx.Response(503))
                     .generate("outline", "p"))
    assert ok == "fine"
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": f"bad key {KEY}"}})

    with pytest.raises(ModelError, match="HTTP 400") as err:
        asyncio.run(_gemini(refuse).generate("outline", "p"))
    assert KEY not in str(err.value) and len(calls) == 1  # 4xx other than 429 is not retried
    with pytest.raises(ModelError, match="no text"):
        asyncio.run(_gemini(lambda r: httpx.Response(200, json={"candidates": [{"finishReason": "SAFETY"}]}))
                    .generate("outline", "p"))
    with pytest.raises(ModelError, match="GEMINI_API_KEY"):
        asyncio.run(GeminiModel("", "gemini-2.5-flash").generate("concept", "p"))


def test_worker_clean_text_keeps_lines_and_bounds_length():
    assert clean_text(" a\tb\nc\u200b\x07 ") == "a\tb\nc"
    assert len(clean_text("x" * 10_000)) == model_mod.OUTPUT_MAX_CHARS


def _run_graph(model, stop_after: str | None = None, saver=None, thread: str = "t"):
    saver = saver or InMemorySaver()
    done: list[str] = []

    async def on_step(step, output):
        done.append(step)

    graph = build_graph(model, on_step, lambda: stop_after in done).compile(checkpointer=saver)
    config = {"configurable": {"thread_id": thread}}

    async def go():
        resume = await saver.aget_tuple(config) is not None
        return await graph.ainvoke(None if resume else {"brief": "Spring sale"}, config, durability="sync")

    return asyncio.run(go()), done, saver


def test_worker_graph_is_deterministic_with_the_fake_model():
    first, steps, _ = _run_graph(FakeModel())
    second, _, _ = _run_graph(FakeModel())
    assert steps == list(STEPS) and first == second
    assert len(first["scenes"]) == 4 and [f["scene"] for f in first["frames"]] == first["scenes"]


def test_worker_graph_stops_between_nodes_and_resumes_where_it_stopped():
    model = FakeModel()
    with pytest.raises(WorkerStopping):
        _run_graph(model, stop_after="concept", saver=(saver := InMemorySaver()))
    assert model.calls == 1
    state, steps, _ = _run_graph(model, saver=saver)  # same thread: resumes at outline
    assert steps == ["outline", "storyboard"] and model.calls == 3 and state["frames"]


def test_worker_fake_model_poison_fails_every_time():
    with pytest.raises(ModelError, match="refused"):
        asyncio.run(FakeModel().generate("concept", "brief [poison]"))


def test_worker_runs_api_refuses_bad_input_and_answers_503_without_a_queue():
    from adagency_backend.main import create_app
    from starlette.testclient import TestClient

    env = {**{k: v for k, v in WORKER_ENV.items() if not k.startswith(("WORKER_", "RUN_"))},
           "CORS_ALLOWED_ORIGINS": "https://app.example.test", "SSE_MAX_STREAM_SECONDS": "100"}
    client = TestClient(create_app(load_settings(env)))  # no lifespan: no database needed for these answers
    url = f"/projects/{uuid.uuid4()}/runs"
    for body in ({}, {"brief": ""}, {"brief": "x" * 4001}, {"brief": "bell\x07"}, {"brief": "ok", "extra": 1}):
        resp = client.post(url, json=body)
        assert resp.status_code == 422, (body, resp.text)
    resp = client.post(url, json={"brief": "A fine brief"})
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "unavailable"
    assert client.get(f"{url}/not-a-uuid").status_code == 422


class _StubQueue:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def change_visibility(self, message, seconds):
        self.calls.append(("change_visibility", message.receive_count, seconds))

    async def resend(self, message):
        self.calls.append(("resend", message.receive_count))


def test_worker_stop_releases_the_message_and_never_spends_the_last_receive():
    from adagency_backend.worker import Worker

    settings = load_worker_settings({**WORKER_ENV, "WORKER_MAX_RECEIVE_COUNT": "3"})
    queue = _StubQueue()
    worker = Worker(settings, db=None, queue=queue, model=FakeModel(), checkpointer=None)

    async def release_all():
        for count in (1, 2, 3):
            await worker._release_message(RunMessage("m", "h", count, message_body(uuid.uuid4())))

    asyncio.run(release_all())
    # visible again at once; on the last allowed receive a fresh copy instead (a stop is not a failure)
    assert queue.calls == [("change_visibility", 1, 0), ("change_visibility", 2, 0), ("resend", 3)]
