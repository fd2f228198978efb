"""A local moto server for the whole session, and a `kit` that runs the real `adkit` command against it.

Every test gets its own app name (so its own stacks, bucket and repository) and its own copy of the
fixture config and templates, so tests never see each other's state.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import deploy_moto_patch
import pytest
from moto.server import ThreadedMotoServer

from generator.cli import main
from generator.deploy import guards

FIXTURES = Path(__file__).parent / "fixtures"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
_ids = itertools.count(1)


@pytest.fixture(scope="module", autouse=True)
def patched_moto():
    """moto's CloudFormation gaps closed for this directory's tests only (other tests use moto as shipped)."""
    deploy_moto_patch.apply()
    yield
    deploy_moto_patch.remove()


@pytest.fixture(scope="session")
def moto_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
        "ADKIT_POLL_SECONDS": "0.02",
    }
    saved = {key: os.environ.get(key) for key in [*env, "AWS_PROFILE", "AWS_SESSION_TOKEN"]}
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class Kit:
    """A private copy of the fixture config/templates with a unique app name, and the CLI to run on it."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
        self.app = f"tst{next(_ids)}"
        self.root = root
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        for part in ("config", "templates"):
            shutil.copytree(FIXTURES / part, root / part)
        for path in [*(root / "config").rglob("*.toml"), *(root / "templates").rglob("*.json")]:
            path.write_text(path.read_text().replace("APP", self.app))
        # The fixture templates stand in for the real ones (moto cannot create App Runner, Amplify, ...), so they
        # are not a render of the fixture config: only the freshness guard is off here (tests/deploy/
        # test_deploy_check.py covers it on real renders); every other check runs.
        monkeypatch.setattr(guards, "stale_templates", lambda *args, **kwargs: [])
        self.session = boto3.Session(region_name=REGION)
        self.cfn = self.session.client("cloudformation")

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def stack_name(self, env: str) -> str:
        return f"{self.app}-{env}"

    def run(self, *args: str, stdin: str = "") -> Result:
        """Run `adkit ARGS` in-process, stdin from `stdin`; returns exit code and captured stdout/stderr."""
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        argv = [*args, "--config-dir", str(self.config_dir), "--templates-dir", str(self.templates_dir)]
        code = main(argv)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def use_variant(self, variant: str, env: str = "dev") -> None:
        for path in (FIXTURES / "variants" / variant).iterdir():
            shutil.copy(path, self.templates_dir / env / path.name)

    def restore(self, env: str, filename: str) -> None:
        shutil.copy(FIXTURES / "templates" / env / filename, self.templates_dir / env / filename)

    def set_config(self, env: str, old: str, new: str) -> None:
        path = self.config_dir / "environments" / f"{env}.toml"
        path.write_text(path.read_text().replace(old, new))

    def push_image(self, tag: str) -> None:
        self.session.client("ecr").put_image(
            repositoryName=f"{self.app}-bootstrap/backend", imageTag=tag,
            imageManifest=json.dumps({"schemaVersion": 2, "tag": tag}),
            imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json")

    def bootstrap(self) -> None:
        result = self.run("bootstrap", "--yes")
        assert result.code == 0, result.text
        self.push_image("v1")
        self.push_image("v2")

    def stack(self, env: str) -> dict | None:
        try:
            return self.cfn.describe_stacks(StackName=self.stack_name(env))["Stacks"][0]
        except self.cfn.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise

    def change_sets(self, env: str) -> list[dict]:
        """Change sets of the environment's stack (moto ignores the StackName filter, so filter here)."""
        summaries = self.cfn.list_change_sets(StackName=self.stack_name(env))["Summaries"]
        return [s for s in summaries if s["StackName"] == self.stack_name(env)]

    def outputs(self, env: str) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in (self.stack(env) or {}).get("Outputs") or []}


@pytest.fixture
def kit(moto_server, tmp_path, capsys, monkeypatch) -> Kit:
    return Kit(tmp_path, capsys, monkeypatch)
