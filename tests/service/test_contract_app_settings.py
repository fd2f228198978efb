"""The application's own settings reach the service: a declared plain variable (`[backend.environment]`) and a
declared secret (`backend.secrets`), as the backend template renders them.

The names come from a render of the kit's fixture config (tests/fixtures/config, whose dev environment declares
FEATURE_FLAGS and the secret payments-api-key), committed as tests/fixtures/rendered/dev/backend.yaml; a test of
the kit (tests/test_adopter.py) fails when that file is not a fresh render. The service is started with exactly
those names, as App Runner starts it, and the test reads them back from the running process's environment.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import localdev
from appcontract import contract_names
from harness import service_env

FIXTURE_TEMPLATES = Path(__file__).resolve().parents[1] / "fixtures" / "rendered"
DECLARED_VARIABLE = "FEATURE_FLAGS"      # [backend.environment] of the fixture dev environment
DECLARED_SECRET = "PAYMENTS_API_KEY"     # backend.secrets = [..., "payments-api-key"]


def _process_environment(pid: int) -> dict[str, str]:
    """The environment the process was started with, as the kernel holds it (what App Runner sets)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def test_contract_declared_variable_and_secret_arrive_in_the_service(pg, aws, tmp_path):
    names = contract_names("dev", FIXTURE_TEMPLATES)
    assert DECLARED_VARIABLE in names.variables and DECLARED_SECRET in names.secrets, names
    rendered_value = dict(names.literal_values)[DECLARED_VARIABLE]
    secret_value = "payments-" + secrets.token_hex(12)
    env = service_env(names, pg, aws, "gemini-" + secrets.token_hex(8), **{DECLARED_SECRET: secret_value})
    log_path = tmp_path / "service.log"
    proc, base = localdev.start_service(env, log_path)
    try:
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text   # extra names do not trouble the service
        started_with = _process_environment(proc.pid)
        assert started_with[DECLARED_VARIABLE] == rendered_value
        assert started_with[DECLARED_SECRET] == secret_value
    finally:
        localdev.stop_service(proc)
    assert secret_value not in log_path.read_text()   # the service never logs the value
