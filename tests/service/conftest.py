"""Session fixtures for the app contract tests: real PostgreSQL (TLS), moto (S3 + Secrets Manager), the service;
per test module, an HTTP client of the service and a project of its own.

The service is started as the image starts it (`python -m adagency_backend`) with exactly the env var and
secret names of the rendered backend template, pointing at the local servers. No internet, no AWS account.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
APPRUNNER = HERE.parents[1] / "apprunner"
for p in (HERE, APPRUNNER, APPRUNNER / "service"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import localdev  # noqa: E402
from appcontract import ContractNames, contract_names  # noqa: E402
from harness import ENV, Running, require_postgres, service_env  # noqa: E402


@pytest.fixture(scope="session")
def names() -> ContractNames:
    return contract_names(ENV)


@pytest.fixture(scope="session")
def pg():
    require_postgres()
    with localdev.LocalPostgres() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def aws(pg):
    with localdev.LocalAws() as server:
        server.create_db_secret(pg.password)
        server.run_queue_url, _ = server.create_run_queue()
        yield server


@pytest.fixture(scope="session")
def service(names, pg, aws, tmp_path_factory) -> Running:
    gemini_key = "gemini-test-" + secrets.token_hex(12)
    env = service_env(names, pg, aws, gemini_key)
    log_path = tmp_path_factory.mktemp("service") / "service.log"
    proc, base = localdev.start_service(env, log_path)
    running = Running(base, proc, log_path, pg, aws, env, names, gemini_key, [pg.password])
    yield running
    localdev.stop_service(proc)


@pytest.fixture(scope="module")
def http(service):
    with httpx.Client(base_url=service.base, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def project(http) -> dict:
    """A project created through the API for the test module (one per module)."""
    resp = http.post("/projects", json={"name": "Spring campaign", "description": "fixture"})
    assert resp.status_code == 201, resp.text
    return resp.json()
