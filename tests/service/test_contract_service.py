"""The app contract, end to end: the reference service against real PostgreSQL and a local AWS API (moto)."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid

import httpx
import localdev
import psycopg
import pytest
from adagency_backend.settings import CONTRACT_SECRETS, CONTRACT_VARIABLES
from harness import (
    ALLOWED_ORIGIN,
    HEARTBEAT_SECONDS,
    SSE_LIMIT_SECONDS,
    UPLOAD_MAX_BYTES,
    service_env,
)
from sse_client import BackgroundStream, read_stream

pytestmark = pytest.mark.slow


def post_event(http, project_id: str, n: int) -> int:
    resp = http.post(f"/projects/{project_id}/events", json={"type": "generation.step", "data": {"n": n}})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def assert_json_error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"]["code"] and body["error"]["message"]
    assert body["request_id"] == resp.headers["x-request-id"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    return body


def test_contract_names_are_what_the_service_reads(names):
    """Every name the service reads is in the template; any other name there is the application's own
    (`[backend.environment]`, `backend.secrets`), never one the service reads."""
    assert set(CONTRACT_VARIABLES) <= set(names.variables), names.source
    assert set(CONTRACT_SECRETS) <= set(names.secrets), names.source
    assert "PORT" not in names.all  # reserved by App Runner


def test_contract_service_started_with_exactly_the_template_names(service):
    app_names = {k for k in service.env if not k.startswith("AWS_")} - {
        "SSE_HEARTBEAT_SECONDS", "UPLOAD_MAX_BYTES", "BIND_ADDRESS"}
    assert app_names == set(service.names.all)


def test_contract_health(http):
    resp = http.get("/healthz", headers={"X-Request-Id": "trace-abc.123"})
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert resp.headers["x-request-id"] == "trace-abc.123"
    assert resp.headers["x-content-type-options"] == "nosniff"
    bad = http.get("/healthz", headers={"X-Request-Id": "no spaces or <tags> allowed"})
    assert bad.headers["x-request-id"] != "no spaces or <tags> allowed" and len(bad.headers["x-request-id"]) == 32


def test_contract_readiness(http, service):
    resp = http.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}, "gemini_configured": True}
    assert service.gemini_key not in resp.text


def test_contract_project_round_trip(http):
    created = http.post("/projects", json={"name": "Été 2026 - launch #1", "description": "line one\nline two"})
    assert created.status_code == 201, created.text
    project = created.json()
    uuid.UUID(project["id"])
    fetched = http.get(f"/projects/{project['id']}")
    assert fetched.status_code == 200 and fetched.json() == project
    listed = http.get("/projects", params={"limit": 100}).json()
    assert project in listed["items"] and listed["limit"] == 100


def test_contract_presigned_upload_lands_in_the_bucket(http, project, aws):
    content = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(2048)
    resp = http.post(f"/projects/{project['id']}/uploads",
                     json={"filename": "hero image.png", "content_type": "image/png", "size_bytes": len(content)})
    assert resp.status_code == 201, resp.text
    upload = resp.json()
    assert upload["key"].startswith(f"projects/{project['id']}/uploads/") and upload["key"].endswith(".png")
    assert upload["fields"]["Content-Type"] == "image/png" and upload["max_bytes"] == len(content)
    policy = json.loads(__import__("base64").b64decode(upload["fields"]["policy"]))
    assert ["content-length-range", 1, len(content)] in policy["conditions"]
    assert {"Content-Type": "image/png"} in policy["conditions"]
    # the browser's part: POST the form straight to S3 (here: moto), fields first, file last
    s3_resp = httpx.post(upload["url"], data=upload["fields"], files={"file": ("hero.png", content, "image/png")})
    assert s3_resp.status_code in (200, 201, 204), s3_resp.text
    obj = aws.client("s3").get_object(Bucket=localdev.BUCKET, Key=upload["key"])
    assert obj["Body"].read() == content
    assert obj["ContentType"] == "image/png"


@pytest.mark.parametrize("body, code", [
    ({"filename": "tool.exe", "content_type": "application/x-msdownload", "size_bytes": 10}, "validation_error"),
    ({"filename": "big.mp4", "content_type": "video/mp4", "size_bytes": UPLOAD_MAX_BYTES + 1}, "upload_too_large"),
], ids=["content-type-not-allowed", "over-size-limit"])
def test_contract_upload_refused(http, project, body, code):
    resp = http.post(f"/projects/{project['id']}/uploads", json=body)
    assert assert_json_error(resp, 422)["error"]["code"] == code


def test_contract_sse_ends_before_the_limit_with_heartbeats(http, project, service):
    url = f"{service.base}/projects/{project['id']}/events"
    result = read_stream(url, timeout=SSE_LIMIT_SECONDS + 10)
    assert result.status == 200 and result.headers["content-type"].startswith("text/event-stream")
    assert result.headers["cache-control"].startswith("no-cache")
    # the server ends the response itself, on time (App Runner would cut it at 120 s)
    assert SSE_LIMIT_SECONDS - 0.3 <= result.duration <= SSE_LIMIT_SECONDS + 1.5, result.duration
    assert result.retry_ms is not None
    assert len(result.pings) >= int(SSE_LIMIT_SECONDS / HEARTBEAT_SECONDS) - 1, result.pings
    gaps = [b - a for a, b in zip([0.0, *result.pings], result.pings, strict=False)]
    assert max(gaps) < HEARTBEAT_SECONDS + 0.5, gaps
    assert any("Last-Event-ID" in c for c in result.comments)


def test_contract_sse_resumes_with_last_event_id_without_loss(http, service):
    pid = http.post("/projects", json={"name": "SSE resume"}).json()["id"]
    url = f"{service.base}/projects/{pid}/events"
    posted = [post_event(http, pid, n) for n in range(3)]  # before anyone listens: replayed

    first = BackgroundStream(url)
    time.sleep(0.3)
    live_sent = time.monotonic()
    posted += [post_event(http, pid, n) for n in range(3, 5)]  # while streaming: delivered live
    r1 = first.result(SSE_LIMIT_SECONDS + 10)
    assert r1.ids == posted, (r1.ids, posted)
    assert r1.events[-1]["data"]["data"] == {"n": 4} and r1.events[-1]["event"] == "generation.step"

    posted += [post_event(http, pid, n) for n in range(5, 8)]  # while disconnected

    def post_live_later():
        time.sleep(0.8)
        posted.append(post_event(http, pid, 99))

    live = threading.Thread(target=post_live_later)
    r2 = read_stream(url, last_event_id=r1.ids[-1], on_open=live.start)
    live.join()
    assert r2.ids == posted[5:], (r2.ids, posted)  # the missed ones first, then the live one
    assert all(e["at"] < 0.6 for e in r2.events[:3]), "missed events must be replayed at once"
    assert r1.ids + r2.ids == posted, "lost, duplicated or reordered events"
    assert live_sent > r1.started


def test_contract_sse_live_events_arrive_promptly(http, service):
    pid = http.post("/projects", json={"name": "SSE latency"}).json()["id"]
    stream = BackgroundStream(f"{service.base}/projects/{pid}/events")
    time.sleep(0.2)
    sent_at = time.monotonic()
    post_event(http, pid, 1)
    r = stream.result(SSE_LIMIT_SECONDS + 10)
    assert len(r.events) == 1
    latency = r.started + r.events[0]["at"] - sent_at
    # delivered by LISTEN/NOTIFY within a fraction of the heartbeat, not by polling or the next response
    assert latency < 0.5, latency


BAD_INPUTS = [
    # id, method, path ("{pid}" = an existing project), request kwargs, status, error code
    ("malformed-json", "POST", "/projects", {"content": b'{"name": ', "headers": {"content-type":
                                             "application/json"}}, 422, "validation_error"),
    ("missing-field", "POST", "/projects", {"json": {}}, 422, "validation_error"),
    ("name-too-long", "POST", "/projects", {"json": {"name": "x" * 121}}, 422, "validation_error"),
    ("name-control-char", "POST", "/projects", {"json": {"name": "bad\u0000name"}}, 422, "validation_error"),
    ("name-bad-charset", "POST", "/projects", {"json": {"name": "<script>alert(1)</script>"}}, 422,
     "validation_error"),
    ("name-invisible-char", "POST", "/projects", {"json": {"name": "a\u202eb"}}, 422, "validation_error"),
    ("unknown-field", "POST", "/projects", {"json": {"name": "ok", "is_admin": True}}, 422, "validation_error"),
    ("wrong-type", "POST", "/projects", {"json": {"name": 123}}, 422, "validation_error"),
    ("description-too-long", "POST", "/projects", {"json": {"name": "ok", "description": "d" * 2001}}, 422,
     "validation_error"),
    ("not-a-uuid", "GET", "/projects/not-a-uuid", {}, 422, "validation_error"),
    ("unknown-project", "GET", f"/projects/{uuid.UUID(int=1)}", {}, 404, "not_found"),
    ("limit-zero", "GET", "/projects?limit=0", {}, 422, "validation_error"),
    ("limit-too-big", "GET", "/projects?limit=1000", {}, 422, "validation_error"),
    ("offset-negative", "GET", "/projects?offset=-1", {}, 422, "validation_error"),
    ("upload-path-traversal", "POST", "/projects/{pid}/uploads",
     {"json": {"filename": "../../etc/passwd", "content_type": "text/plain", "size_bytes": 1}}, 422,
     "validation_error"),
    ("upload-size-as-string", "POST", "/projects/{pid}/uploads",
     {"json": {"filename": "a.txt", "content_type": "text/plain", "size_bytes": "10"}}, 422, "validation_error"),
    ("upload-size-zero", "POST", "/projects/{pid}/uploads",
     {"json": {"filename": "a.txt", "content_type": "text/plain", "size_bytes": 0}}, 422, "validation_error"),
    ("upload-unknown-project", "POST", f"/projects/{uuid.UUID(int=2)}/uploads",
     {"json": {"filename": "a.txt", "content_type": "text/plain", "size_bytes": 1}}, 404, "not_found"),
    ("event-type-invalid", "POST", "/projects/{pid}/events", {"json": {"type": "Bad Type!"}}, 422,
     "validation_error"),
    ("event-data-too-large", "POST", "/projects/{pid}/events",
     {"json": {"type": "big", "data": {"blob": "x" * 9000}}}, 422, "validation_error"),
    ("event-data-not-object", "POST", "/projects/{pid}/events", {"json": {"type": "t", "data": [1, 2]}}, 422,
     "validation_error"),
    ("last-event-id-not-a-number", "GET", "/projects/{pid}/events", {"headers": {"Last-Event-ID": "abc"}}, 400,
     "bad_request"),
    ("last-event-id-negative", "GET", "/projects/{pid}/events?last_event_id=-5", {}, 400, "bad_request"),
    ("events-unknown-project", "GET", f"/projects/{uuid.UUID(int=3)}/events", {}, 404, "not_found"),
    ("body-too-large", "POST", "/projects", {"content": b'{"name": "' + b"x" * 70_000 + b'"}',
                                             "headers": {"content-type": "application/json"}}, 413,
     "payload_too_large"),
    ("not-json-content-type", "POST", "/projects", {"content": b"name=x", "headers": {"content-type":
                                                    "application/x-www-form-urlencoded"}}, 415,
     "unsupported_media_type"),
    ("unknown-route", "GET", "/admin", {}, 404, "not_found"),
    ("method-not-allowed", "DELETE", "/projects", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize("method, path, kwargs, status, code", [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_contract_bad_input_rejected(http, project, method, path, kwargs, status, code):
    resp = http.request(method, path.replace("{pid}", project["id"]), **kwargs)
    body = assert_json_error(resp, status)
    assert body["error"]["code"] == code
    assert "<script>" not in resp.text and "etc/passwd" not in resp.text  # inputs are not echoed


def test_contract_bad_inputs_cover_ten_kinds():
    assert len({c[0] for c in BAD_INPUTS}) >= 10


def test_contract_cors_only_for_the_configured_origins(http):
    def preflight(origin):
        return http.options("/projects", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "content-type"})

    ok = preflight(ALLOWED_ORIGIN)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    evil = preflight("https://evil.example")
    assert "access-control-allow-origin" not in evil.headers
    simple = http.get("/healthz", headers={"Origin": ALLOWED_ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_contract_db_password_rotation_recovers_without_restart(http, service):
    """Rotate like Secrets Manager does (DB then secret), kill every connection: the service heals itself."""
    pg, aws = service.pg, service.aws
    pid = http.post("/projects", json={"name": "Before rotation"}).json()["id"]
    reads_before = service.log_text().count('"database secret loaded"')
    stream = BackgroundStream(f"{service.base}/projects/{pid}/events")

    old, new = pg.password, localdev.new_password()
    pg.set_password(new)
    aws.rotate_db_secret(new)
    service.passwords.append(new)
    assert pg.terminate_app_connections() >= 1  # pool connections and the LISTEN connection
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pg.port, dbname=localdev.DB_NAME, user=localdev.APP_USER,
                        password=old, sslmode="require", connect_timeout=5).close()

    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    created = http.post("/projects", json={"name": "After rotation"})
    assert created.status_code == 201, created.text
    event_id = post_event(http, pid, 1)
    assert stream.result(SSE_LIMIT_SECONDS + 10).ids == [event_id]  # the open stream survived and got the event
    assert service.proc.poll() is None  # no restart
    logs = service.log_text()
    assert "database refused the credentials; re-reading the secret" in logs
    assert logs.count('"database secret loaded"') > reads_before


def test_contract_graceful_shutdown_ends_streams_and_exits(names, pg, aws, tmp_path, http, project):
    """SIGTERM (App Runner replacing an instance): open SSE streams end at once, the process exits cleanly."""
    env = service_env(names, pg, aws, "gemini-shutdown-test-key", SSE_MAX_STREAM_SECONDS="60")
    log_path = tmp_path / "service.log"
    proc, base = localdev.start_service(env, log_path)
    try:
        stream = BackgroundStream(f"{base}/projects/{project['id']}/events", timeout=30)
        time.sleep(0.2)
        started = time.monotonic()
        proc.terminate()
        proc.wait(10)
        result = stream.result(5)
        assert time.monotonic() - started < 5
        assert result.duration < 10  # far below the 60 s stream limit
    finally:
        localdev.stop_service(proc)
    logs = log_path.read_text()
    assert "Application shutdown complete" in logs and "service stopped" in logs


def test_contract_bad_configuration_refused_at_startup(names, pg, aws, tmp_path):
    env = service_env(names, pg, aws, "k" * 16, SSE_MAX_STREAM_SECONDS="150")
    del env["DB_SECRET_ARN"]
    proc = localdev.subprocess.run([localdev.sys.executable, "-m", "adagency_backend"],
                                   env={**localdev.base_process_env(), **env}, capture_output=True, text=True,
                                   timeout=30, cwd=localdev.SERVICE_DIR)
    assert proc.returncode == 2
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["level"] == "ERROR" and "DB_SECRET_ARN" in line["reason"]
    assert pg.password not in proc.stdout


def test_contract_logs_are_json_with_request_ids_and_no_secrets(service, http):
    http.get("/healthz", headers={"X-Request-Id": "log-check-1"})
    deadline = time.monotonic() + 5  # the access line is written just after the response is sent
    while '"log-check-1"' not in service.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = service.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "no log lines"
    access = [entry for entry in lines if entry["logger"] == "adagency_backend.access"]
    assert any(e["request_id"] == "log-check-1" and e["path"] == "/healthz" for e in access)
    assert all({"method", "path", "status", "duration_ms"} <= e.keys() for e in access)
    for secret_value in [service.gemini_key, *service.passwords]:
        assert secret_value not in text
