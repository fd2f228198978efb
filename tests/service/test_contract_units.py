"""Fast contract checks on the service's pieces (no servers): settings, secrets hygiene, SSE format, template reader."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import psycopg
import pytest
from adagency_backend.db import is_auth_failure
from adagency_backend.events import format_event
from adagency_backend.logs import JsonFormatter, register_secret
from adagency_backend.settings import (
    CONTRACT_SECRETS,
    CONTRACT_VARIABLES,
    SettingsError,
    load_settings,
)
from appcontract import contract_names, environments, names_from_template

VALID = {
    "APP_ENVIRONMENT": "dev", "APP_REGION": "eu-west-1", "DB_HOST": "db.cluster-x.eu-west-1.rds.amazonaws.com",
    "DB_PORT": "5432", "DB_NAME": "app", "DB_SSLMODE": "require", "CONTENT_BUCKET": "adagency-dev-content",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-abc-123",
    "CORS_ALLOWED_ORIGINS": "https://main.d1.amplifyapp.com, https://www.example.com",
    "SSE_MAX_STREAM_SECONDS": "100", "GEMINI_API_KEY": "AIza-very-secret-value",
}


def test_contract_settings_load_from_the_contract_names_only():
    s = load_settings(VALID)
    assert s.port == 8080 and s.sse_max_stream_seconds == 100 and s.sse_heartbeat_seconds == 15
    assert s.cors_origins == ("https://main.d1.amplifyapp.com", "https://www.example.com")
    assert s.gemini_configured and "AIza" not in repr(s)
    assert set(VALID) == set(CONTRACT_VARIABLES) | set(CONTRACT_SECRETS)


def test_contract_settings_without_gemini_key_still_start():
    env = {k: v for k, v in VALID.items() if k != "GEMINI_API_KEY"}
    assert load_settings(env).gemini_configured is False


@pytest.mark.parametrize("changes, message", [
    ({"DB_HOST": None, "CONTENT_BUCKET": None}, "DB_HOST, CONTENT_BUCKET"),
    # the kit renders <= 110 on App Runner (120 s request limit) and <= 900 on ECS Express; the service refuses more
    ({"SSE_MAX_STREAM_SECONDS": "901"}, "SSE_MAX_STREAM_SECONDS"),
    ({"SSE_MAX_STREAM_SECONDS": "soon"}, "SSE_MAX_STREAM_SECONDS"),
    ({"DB_SSLMODE": "disable"}, "DB_SSLMODE"),
    ({"DB_PORT": "99999"}, "DB_PORT"),
    ({"DB_SECRET_ARN": "my-secret"}, "DB_SECRET_ARN"),
    ({"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS"),
    ({"CORS_ALLOWED_ORIGINS": "http://app.example.com"}, "CORS_ALLOWED_ORIGINS"),
    ({"CORS_ALLOWED_ORIGINS": "https://app.example.com/path"}, "CORS_ALLOWED_ORIGINS"),
    ({"APP_ENVIRONMENT": "dev; rm -rf /"}, "APP_ENVIRONMENT"),
], ids=["missing", "stream-limit-above-900", "stream-limit-nan", "plaintext-db", "port", "secret-not-arn",
        "cors-wildcard", "cors-plain-http", "cors-path", "env-name"])
def test_contract_settings_refuse_bad_values(changes, message):
    env = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    with pytest.raises(SettingsError, match=message) as err:
        load_settings(env)
    assert "AIza" not in str(err.value)


def test_contract_auth_failure_detection():
    assert is_auth_failure(psycopg.OperationalError(
        'connection failed: FATAL:  password authentication failed for user "app_user"'))
    assert not is_auth_failure(psycopg.OperationalError("connection failed: Connection refused"))
    assert not is_auth_failure(ValueError("authentication failed"))


def test_contract_logs_redact_registered_secrets():
    register_secret("s3cr3t-\"pass\"word")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login with %s", ('s3cr3t-"pass"word',), None)
    record.detail = {"password": 's3cr3t-"pass"word'}
    line = JsonFormatter().format(record)
    assert "s3cr3t" not in line and "[REDACTED]" in line
    assert json.loads(line)["msg"] == "login with [REDACTED]"


def test_contract_sse_message_format():
    text = format_event({"id": 42, "type": "generation.done", "data": {"ok": True},
                         "created_at": datetime(2026, 1, 2, tzinfo=UTC)})
    assert text.startswith("id: 42\nevent: generation.done\ndata: {") and text.endswith("}\n\n")
    assert text.count("\n") == 4  # one data line: JSON never contains a raw newline
    assert json.loads(text.split("data: ", 1)[1])["data"] == {"ok": True}


SERVICE_TEMPLATE = """
Resources:
  Service:
    Type: AWS::AppRunner::Service
    Properties:
      SourceConfiguration:
        ImageRepository:
          ImageIdentifier: !Sub '${Repo}:${ImageTag}'
          ImageConfiguration:
            Port: '8080'
            RuntimeEnvironmentVariables:
              - Name: DB_HOST
                Value: !Ref DatabaseEndpoint
              - Name: APP_ENVIRONMENT
                Value: dev
            RuntimeEnvironmentSecrets:
              - Name: GEMINI_API_KEY
                Value: !GetAtt Secret.Arn
"""


def test_contract_template_reader_takes_names_from_the_app_runner_service():
    import yaml
    from appcontract import _CfnLoader

    names = names_from_template(yaml.load(SERVICE_TEMPLATE, Loader=_CfnLoader))
    assert names.variables == ("DB_HOST", "APP_ENVIRONMENT") and names.secrets == ("GEMINI_API_KEY",)
    assert names_from_template({"Resources": {"B": {"Type": "AWS::S3::Bucket"}}}) is None


@pytest.mark.parametrize("env", environments())
def test_contract_every_environment_renders_the_contract_names(env):
    assert set(CONTRACT_VARIABLES) | set(CONTRACT_SECRETS) <= set(contract_names(env).all)


def _fake_rows(project_id, ids):
    return [{"id": i, "project_id": project_id, "type": "t", "data": {"i": i},
             "created_at": datetime(2026, 1, 1, tzinfo=UTC)} for i in ids]


def test_contract_sse_generator_replays_pings_ends_and_unsubscribes(monkeypatch):
    """The stream body without a database: replay after Last-Event-ID, heartbeats, end at the limit, cleanup."""
    import asyncio
    import uuid

    from adagency_backend import events

    pid = uuid.uuid4()
    stored = _fake_rows(pid, range(1, 8))

    async def events_after(db, project_id, after_id, limit):
        return [r for r in stored if r["id"] > after_id][:limit]

    async def never_connects():
        await asyncio.sleep(3600)

    async def last_event_id(db, project_id):
        return max((r["id"] for r in stored), default=0)

    monkeypatch.setattr(events.repository, "events_after", events_after)
    monkeypatch.setattr(events.repository, "last_event_id", last_event_id)

    async def run():
        broker = events.EventBroker(never_connects)
        chunks, started = [], asyncio.get_running_loop().time()
        async for chunk in events.stream_events(None, broker, pid, 4, max_seconds=0.5, heartbeat_seconds=0.1):
            chunks.append(chunk.decode())
        elapsed = asyncio.get_running_loop().time() - started
        assert broker.subscriber_count() == 0
        # a client that goes away mid-stream: the generator is closed, the subscription released
        gen = events.stream_events(None, broker, pid, 0, max_seconds=30, heartbeat_seconds=0.05)
        await anext(gen)
        await anext(gen)
        assert broker.subscriber_count() == 1
        await gen.aclose()
        assert broker.subscriber_count() == 0
        await broker.close()
        return chunks, elapsed

    chunks, elapsed = asyncio.run(run())
    messages = [m for c in chunks for m in c.split("\n\n") if m]
    ids = [int(m.split("\n")[0][4:]) for m in messages if m.startswith("id: ")]
    assert ids == [5, 6, 7]
    assert chunks[0].startswith("retry: ") and chunks[-1].startswith(": stream ends")
    assert 3 <= chunks.count(": ping\n\n") <= 5
    assert 0.45 <= elapsed < 1.0


@pytest.mark.parametrize("ci, outcome", [("true", "failed"), ("", "skipped")])
def test_contract_missing_postgres_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    import harness

    monkeypatch.setattr(harness.localdev, "find_pg_bin", lambda: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(BaseException) as caught:
        harness.require_postgres()
    assert type(caught.value).__name__ == {"failed": "Failed", "skipped": "Skipped"}[outcome]
    assert "apt-get install" in str(caught.value)
