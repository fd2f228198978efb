"""Commands must not change what they should not, and their errors must point the right way (issue 12 §4, §5).

End to end against the local moto server where moto behaves like AWS (conftest.py); botocore exceptions built
by hand where a real failure (no network, rejected keys) cannot be produced locally.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ProfileNotFound

from generator.cli import main, parser
from generator.config import CONFIG_DIR
from generator.deploy import aws_errors, preflight, secrets
from generator.deploy.errors import EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, DeployError, UsageError
from generator.deploy.targets import Target
from generator.deploy.ui import Ui

pytestmark = pytest.mark.slow


# ---- two operators -----------------------------------------------------------------------------------------------

# `adkit` in a child process with the freshness guard off, as the kit fixture turns it off in-process: the
# fixture templates stand in for rendered ones (moto cannot create App Runner, Amplify, ...).
STAND_IN_ADKIT = ("import sys; from generator.deploy import guards; "
                  "guards.stale_templates = lambda *args, **kwargs: []; "
                  "from generator.cli import main; sys.exit(main(sys.argv[1:]))")


class _SecondOperator(io.StringIO):
    """stdin of the first operator: when the first `adkit deploy` asks, a second one runs `deploy --yes`."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__()
        self.argv = argv
        self.result: subprocess.CompletedProcess | None = None

    def readline(self, *args) -> str:
        if self.result is None:
            self.result = subprocess.run([sys.executable, "-c", STAND_IN_ADKIT, *self.argv], capture_output=True,
                                         text=True, env=dict(os.environ), timeout=300, check=False)
        return "y\n"


@pytest.mark.parametrize("first_deploy", [True, False], ids=["new environment", "update"])
def test_second_operator_is_refused_while_the_first_waits_at_the_prompt(kit, first_deploy):
    kit.bootstrap()
    if not first_deploy:
        assert kit.run("deploy", "dev", "--image-tag", "v1", "--yes").code == 0
    dirs = ["--config-dir", str(kit.config_dir), "--templates-dir", str(kit.templates_dir)]
    second = _SecondOperator(["deploy", "dev", "--image-tag", "v2", "--yes", *dirs])
    kit.monkeypatch.setattr(sys, "stdin", second)
    kit.capsys.readouterr()

    code = main(["deploy", "dev", "--image-tag", "v2", *dirs])   # answers "y" after the second one ran

    first = kit.capsys.readouterr()
    assert second.result is not None, first.err
    assert second.result.returncode == EXIT_REFUSED, second.result.stderr
    assert "another run seems to be" in second.result.stderr and "Traceback" not in second.result.stderr
    assert code == 0, first.err
    stack = kit.stack("dev")
    assert stack["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
    assert stack["Parameters"] == [{"ParameterKey": "ImageTag", "ParameterValue": "v2"}]


class _ChangeSets:
    """An Aws whose CloudFormation lists the given change set summaries (all pages in one)."""

    region, profile = "eu-west-1", None

    def __init__(self, summaries: list[dict]) -> None:
        self.summaries = summaries

    def client(self, service: str):
        summaries = self.summaries

        class Paginator:
            def paginate(self, **kwargs):
                return [{"Summaries": summaries}]

        class Client:
            def get_paginator(self, name):
                assert name == "list_change_sets"
                return Paginator()
        return Client()


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
STACK = {"StackId": "arn:stack/acme-qa/1", "StackName": "acme-qa", "StackStatus": "UPDATE_COMPLETE"}


def _summary(minutes_ago: int, status: str = "CREATE_COMPLETE", execution: str = "AVAILABLE",
             stack_id: str = STACK["StackId"]) -> dict:
    return {"StackId": stack_id, "ChangeSetName": "adkit-x", "ChangeSetId": "arn:cs/adkit-x", "Status": status,
            "ExecutionStatus": execution, "CreationTime": NOW - timedelta(minutes=minutes_ago),
            "Description": "adkit deploy qa"}


@pytest.mark.parametrize(("summaries", "stack", "refused"), [
    ([_summary(5)], STACK, True),
    ([_summary(5, status="CREATE_IN_PROGRESS", execution="UNAVAILABLE")], STACK, True),
    ([_summary(90)], STACK, False),                                            # abandoned long ago
    ([_summary(5, execution="EXECUTE_COMPLETE")], STACK, False),               # already executed
    ([_summary(5, status="FAILED", execution="UNAVAILABLE")], STACK, False),   # "no changes"
    ([_summary(5, stack_id="arn:stack/acme-live/2")], STACK, False),           # another stack's
    ([], {**STACK, "StackStatus": "REVIEW_IN_PROGRESS", "CreationTime": NOW - timedelta(minutes=5)}, True),
    ([], {**STACK, "StackStatus": "REVIEW_IN_PROGRESS", "CreationTime": NOW - timedelta(minutes=90)}, False),
], ids=["recent available", "being created", "old", "executed", "failed", "other stack", "recent review",
        "old review"])
def test_another_run_in_progress_is_told_apart_from_leftovers(summaries, stack, refused):
    if refused:
        with pytest.raises(DeployError, match="another run seems to be") as error:
            preflight.other_run(_ChangeSets(summaries), _target(), stack, now=NOW)
        assert error.value.exit_code == EXIT_REFUSED
    else:
        preflight.other_run(_ChangeSets(summaries), _target(), stack, now=NOW)


def test_destroy_is_refused_while_another_run_waits_on_the_stack(kit):
    kit.bootstrap()
    kit.cfn.create_change_set(StackName=kit.stack_name("dev"), ChangeSetName="pending", ChangeSetType="CREATE",
                              TemplateBody=json.dumps({"Resources": {"T": {"Type": "AWS::SNS::Topic"}}}))

    result = kit.run("destroy", "dev", "--yes")

    assert result.code == EXIT_REFUSED, result.text
    assert "another run seems to be in progress" in result.err
    assert kit.stack("dev")["StackStatus"] == "REVIEW_IN_PROGRESS"


@pytest.mark.parametrize("name", ["root.config.json", "root.yaml"])
def test_rendered_file_that_is_not_utf8_is_one_line_not_a_traceback(kit, name):
    path = kit.templates_dir / "dev" / name
    path.write_bytes(path.read_bytes() + b"\n# \xff\n")

    result = kit.run("plan", "dev")

    assert result.code == EXIT_USAGE, result.text
    assert f"{path}: not valid UTF-8 (byte 0xff" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("text", ["[]", '{"Parameters": ["x"]}', "[" * 100_000])
def test_rendered_configuration_file_of_the_wrong_shape_is_one_line(kit, text):
    (kit.templates_dir / "dev" / "root.config.json").write_text(text)
    result = kit.run("plan", "dev")
    assert result.code == EXIT_USAGE, result.text
    assert "root.config.json: not" in result.err and "Traceback" not in result.err


# ---- secrets set: refused before any AWS call --------------------------------------------------------------------

class _NoAws:
    """Any AWS call fails the test: the value must be refused before the command talks to AWS."""

    region, profile, endpoint_note = "eu-west-1", None, ""

    def client(self, service: str):
        raise AssertionError(f"AWS {service} called before the value was checked")

    advisory_client = client


def _target() -> Target:
    return Target(label="qa", kind="environment", app_name="acme", stack_name="acme-qa", account_id="123456789012",
                  region="eu-west-1", config_file=Path("qa.toml"), template=Path("root.yaml"))


def _piped(data: bytes) -> Ui:
    return Ui(out=io.StringIO(), err=io.StringIO(), inp=io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


BAD_SECRETS = [
    ("gemini-api-key", b"caf\xe9-key\n", "not valid UTF-8", "byte 0xe9 at offset 3"),
    ("gemini-api-key", b"abc\x00def", "NUL character", ""),
    ("gemini-api-key", b"k" * 65_537, "too large", "65537 bytes"),
    # 65,530 characters fit alone, but not inside {"token": "..."}
    ("git-token", b"t" * 65_530, "too large", '{"token": ...}'),
    ("git-token", "\u00e9".encode() * 32_760, "too large", "bytes"),   # JSON escapes é as \u00e9: 6 bytes each
]


@pytest.mark.parametrize(("name", "data", "what", "detail"), BAD_SECRETS,
                         ids=[f"{n}:{w}:{len(d)}" for n, d, w, _ in BAD_SECRETS])
def test_secrets_set_refuses_what_it_cannot_store_faithfully_before_calling_aws(name, data, what, detail):
    with pytest.raises(UsageError) as error:
        secrets.run(_NoAws(), _target(), _piped(data), name)
    assert what in error.value.message and detail in error.value.message
    assert error.value.exit_code == EXIT_USAGE


def test_secrets_set_refuses_surrogate_escaped_text_from_a_text_stream():
    ui = Ui(out=io.StringIO(), err=io.StringIO(), inp=io.StringIO("caf\udce9"))
    with pytest.raises(UsageError, match="not valid UTF-8"):
        secrets.run(_NoAws(), _target(), ui, "gemini-api-key")


def test_secrets_set_accepts_the_largest_value_that_fits():
    assert len(secrets.check_value(secrets.KNOWN["gemini-api-key"], "x", "k" * 65_536).encode()) == 65_536
    stored = secrets.check_value(secrets.KNOWN["git-token"], "x", "t" * (65_536 - len('{"token": ""}')))
    assert len(stored.encode()) == 65_536 and json.loads(stored)["token"].startswith("t")


def test_secrets_set_on_a_missing_secret_says_to_deploy_not_to_check_permissions(kit):
    kit.bootstrap()
    assert kit.run("deploy", "dev", "--image-tag", "v1", "--yes").code == 0   # the secret itself is never created

    result = kit.run("secrets", "set", "dev", "gemini-api-key", stdin="value\n")

    assert result.code == EXIT_FAILED, result.text
    assert "does not exist" in result.err and "adkit deploy dev" in result.err
    assert "permission" not in result.err and ".." not in result.err


# ---- restore --timeout-minutes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "0", "soon"])
def test_restore_refuses_a_timeout_that_is_not_a_positive_finite_number(value, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["restore", "qa", "--latest", f"--timeout-minutes={value}", "--config-dir", "/nonexistent"])
    assert exited.value.code == EXIT_USAGE
    assert "--timeout-minutes: must be a" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_watch_time_limit_from_the_environment_is_never_disabled(value, monkeypatch):
    from generator.deploy import session

    monkeypatch.setenv(session.TIMEOUT_ENV, value)
    monkeypatch.setenv(session.POLL_ENV, value)
    assert session.timeout_seconds() == session.DEFAULT_TIMEOUT_MINUTES * 60
    assert 0 <= session.poll_seconds() <= 60


# ---- errors point the right way ----------------------------------------------------------------------------------

def _client_error(code: str, message: str, operation: str = "GetCallerIdentity") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


ADVICE = [
    (EndpointConnectionError(endpoint_url="https://sts.eu-west-1.amazonaws.com"), "could not reach AWS",
     "network access", EXIT_FAILED, "credentials"),
    (_client_error("InvalidClientTokenId", "The security token included in the request is invalid."),
     "AWS rejected the credentials", "aws sso login", EXIT_REFUSED, "network"),
    (_client_error("ExpiredToken", "The security token included in the request is expired"),
     "AWS rejected the credentials", "refresh them", EXIT_REFUSED, "network"),
    (ProfileNotFound(profile="nope"), "AWS profile 'nope' not found", "aws configure list-profiles", EXIT_USAGE,
     "network"),
    (NoCredentialsError(), "no usable AWS credentials", "aws sso login", EXIT_REFUSED, "network"),
    (_client_error("AccessDenied", "User is not authorized to perform: sts:GetCallerIdentity."),
     "AWS denied GetCallerIdentity", "needs permission", EXIT_FAILED, "network"),
    (_client_error("ResourceNotFoundException", "Secrets Manager can't find the specified secret.",
                   "PutSecretValue"), "not found in AWS", "deployed", EXIT_FAILED, "permission"),
]


@pytest.mark.parametrize(("exc", "what", "todo", "code", "not_said"), ADVICE, ids=[a[1] for a in ADVICE])
def test_each_kind_of_aws_failure_gets_its_own_advice(exc, what, todo, code, not_said):
    explained = aws_errors.explain(exc, "checking the AWS credentials", "nope")
    message = explained.message
    assert message.startswith(what) and todo in message and explained.exit_code == code
    assert not_said not in message.split("To fix:")[1]
    assert ".." not in message


class _FailingSts:
    region, profile = "eu-west-1", None

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def client(self, service: str):
        exc = self.exc

        class Client:
            def get_caller_identity(self):
                raise exc
        return Client()


def test_preflight_does_not_call_an_unreachable_endpoint_rejected_credentials():
    with pytest.raises(DeployError) as error:
        preflight.identity(_FailingSts(EndpointConnectionError(endpoint_url="http://127.0.0.1:9")), _target())
    assert "could not reach AWS" in error.value.message and "rejected" not in error.value.message


def test_unknown_profile_is_a_usage_error_without_network_advice(kit):
    result = kit.run("status", "dev", "--profile", "no-such-profile")
    assert result.code == EXIT_USAGE, result.text
    assert "AWS profile 'no-such-profile' not found" in result.err
    assert "network" not in result.err and "Traceback" not in result.err


def test_messages_never_end_a_sentence_twice():
    assert DeployError("could not store x", "Secrets Manager can't find the specified secret.", "deploy").message \
        == "could not store x: Secrets Manager can't find the specified secret.\n  To fix: deploy"


@pytest.mark.parametrize("argv", [
    ["render"], ["check", "qa"], ["deploy", "qa"], ["plan", "qa"], ["status", "qa"], ["destroy", "qa"],
    ["secrets", "set", "qa", "gemini-api-key"], ["bootstrap"], ["pipeline"], ["restore", "qa", "--latest"],
])
def test_every_subcommand_has_the_same_config_dir_option_and_default(argv):
    assert parser().parse_args(argv).config_dir == CONFIG_DIR
    assert parser().parse_args([*argv, "--config-dir", "elsewhere"]).config_dir == Path("elsewhere")
