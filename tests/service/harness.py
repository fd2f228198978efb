"""Shared pieces of the contract tests: settings for the service under test and the running-service record."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import localdev
import pytest
from appcontract import ContractNames, default_environment

ENV = default_environment()
SSE_LIMIT_SECONDS = 3.0
HEARTBEAT_SECONDS = 1.0
UPLOAD_MAX_BYTES = 1024 * 1024
ALLOWED_ORIGIN = "https://app.example.test"
# test-only tuning knobs (production defaults otherwise); never part of the template's contract
TUNING = {"SSE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS), "UPLOAD_MAX_BYTES": str(UPLOAD_MAX_BYTES),
          "BIND_ADDRESS": "127.0.0.1"}


def require_postgres() -> None:
    if localdev.find_pg_bin() is None:
        msg = f"PostgreSQL server binaries not found (initdb). Install them: {localdev.INSTALL_HINT} or `make postgres`"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@dataclass
class Running:
    """A started service and the local servers behind it."""

    base: str
    proc: object
    log_path: Path
    pg: localdev.LocalPostgres
    aws: localdev.LocalAws
    env: dict[str, str]
    names: ContractNames
    gemini_key: str
    passwords: list[str]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def service_env(names: ContractNames, pg, aws, gemini_key: str, **overrides: str) -> dict[str, str]:
    """Exactly the template's names (plus AWS SDK endpoint/credentials and tuning knobs). The application's own
    plain variables get their rendered value, its own secrets a random stand-in (App Runner injects the value)."""
    values = {**dict(names.literal_values),
              **{name: "secret-" + secrets.token_hex(8) for name in names.secrets}}
    values.update(localdev.contract_values(pg, aws, SSE_MAX_STREAM_SECONDS=str(SSE_LIMIT_SECONDS),
                                           CORS_ALLOWED_ORIGINS=ALLOWED_ORIGIN, GEMINI_API_KEY=gemini_key))
    values.setdefault("RUN_QUEUE_URL", "")  # the backend stack renders it with workers; empty = no runs accepted
    unknown = [n for n in names.all if n not in values]
    assert not unknown, f"{names.source} defines names the contract test has no value for: {unknown}"
    env = {name: values[name] for name in names.all}
    return {**env, **localdev.aws_env(aws), **TUNING, **overrides}
