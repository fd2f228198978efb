"""`adkit secrets set ENV NAME`: store a secret value, then let the backend (and the workers) pick it up.

NAME is any secret the environment declares (`backend.secrets`), or `git-token` (account level: no ENV
needed, `adkit secrets set git-token`).

The value is read from stdin (pipe) or a hidden prompt, sent only to Secrets Manager, and never
printed, logged or put in a template, parameter or environment variable. Each secret is stored in
the shape its reader expects: the Gemini key as the plain string (App Runner or ECS injects the whole
SecretString into GEMINI_API_KEY); the Git token as JSON `{"token": "..."}` (the frontend stack reads
it with `{{resolve:secretsmanager:...:SecretString:token}}`, and the bootstrap creates it in that shape).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError

from generator import naming
from generator.config import secret_variable as config_secret_variable
from generator.deploy import aws_errors, preflight, stacks
from generator.deploy.errors import EXIT_OK, DeployError, DeployFailed, Interrupted, PreflightRefused, UsageError
from generator.deploy.session import Aws, poll_seconds
from generator.deploy.targets import Target
from generator.deploy.ui import Ui


@dataclass(frozen=True)
class Known:
    level: str          # "environment": the env's root stack; "account": the bootstrap stack
    output: str         # stack output holding the secret ARN
    purpose: str
    json_key: str = ""  # store {json_key: value} instead of the plain value


GIT_TOKEN = "git-token"
KNOWN = {
    "gemini-api-key": Known("environment", "GeminiApiKeySecretArn", "Gemini API key the backend calls Gemini with"),
    GIT_TOKEN: Known("account", "GitTokenSecretArn", "Git provider token Amplify clones the frontend with",
                     naming.GIT_TOKEN_JSON_KEY),
}


def known_secrets(declared: list[str] | None) -> dict[str, Known]:
    """The secrets `secrets set` accepts: the environment's `backend.secrets` (None: no environment) and
    the account-level Git token."""
    found = {name: KNOWN.get(name) or Known("environment", naming.app_secret_output(name),
                                            f"application secret, injected as {config_secret_variable(name)}")
             for name in declared or []}
    found[GIT_TOKEN] = KNOWN[GIT_TOKEN]
    return found
APP_RUNNER_WAIT_SECONDS = 900   # an App Runner operation (deploy, update) takes a few minutes
# SecretString is at most 65,536 bytes:
# https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html
MAX_SECRET_BYTES = 65_536


def secret_string(known: Known, value: str) -> str:
    """The SecretString to store: the value itself, or {json_key: value}. A value that already is a JSON
    object with that key (e.g. copied from the console) is stored as it is."""
    if not known.json_key:
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get(known.json_key), str):
        return value
    return json.dumps({known.json_key: value})


def read_value(ui: Ui, name: str, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """From stdin when it is not a terminal (a pipe); else a hidden prompt, asked twice."""
    if ui.inp.isatty():
        first = prompt(f"Value for {name} (hidden): ")
        if prompt(f"Again, to confirm {name}: ") != first:
            raise UsageError("the two values differ", "a typing mistake would be stored silently",
                             "run the command again")
        value = first
    else:
        value = _read_piped(ui.inp).rstrip("\r\n")
    _utf8(value)
    if not value.strip():
        raise UsageError(f"empty value for {name}", "an empty secret would break its users at runtime",
                         f"pipe the value in (`adkit secrets set ENV {name} < file`) or type it at the prompt")
    return value


def _read_piped(stream) -> str:
    """All of stdin, decoded strictly as UTF-8 (never with replacement or surrogate escapes)."""
    raw = getattr(stream, "buffer", None)
    if raw is None:
        return stream.read()
    data = raw.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError("the value piped in is not valid UTF-8",
                         f"byte 0x{data[exc.start]:02x} at offset {exc.start} would be stored as other characters",
                         "convert the file to UTF-8 (`iconv -t UTF-8`), then retry") from None


def _utf8(value: str) -> None:
    """Refuse text holding undecodable bytes (surrogate escapes from a non-UTF-8 stdin or prompt)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError("the value is not valid UTF-8", f"character {exc.start} could not be decoded as UTF-8 "
                         "and would be stored as other characters",
                         "convert the input to UTF-8 (`iconv -t UTF-8`), then retry") from None


def check_value(known: Known, name: str, value: str) -> str:
    """The SecretString to store for `value`; UsageError for what Secrets Manager or the reader cannot take:
    NUL characters, or more than MAX_SECRET_BYTES bytes of UTF-8 after the JSON wrapping."""
    if "\x00" in value:
        raise UsageError(f"the value for {name} contains a NUL character",
                         "it would reach the service cut short or changed", "remove it, then retry")
    stored = secret_string(known, value)
    size = len(stored.encode("utf-8"))
    if size > MAX_SECRET_BYTES:
        shape = " (stored as JSON {\"" + known.json_key + "\": ...})" if known.json_key else ""
        raise UsageError(f"the value for {name} is too large", f"{size} bytes{shape}; Secrets Manager stores at "
                         f"most {MAX_SECRET_BYTES} bytes", "store a shorter value")
    return stored


def _arn(aws: Aws, target: Target, known: Known, name: str) -> str:
    stack_name = target.stack_name if known.level == "environment" else naming.bootstrap_stack_name(target.app_name)
    stack = stacks.describe(aws, stack_name)
    arn = stacks.outputs(stack).get(known.output)
    if not arn:
        deploy = f"adkit deploy {target.label}" if known.level == "environment" else "adkit bootstrap"
        raise PreflightRefused(f"cannot set {name}", f"stack {stack_name} "
                               + ("does not exist" if stack is None else f"has no output {known.output}"),
                               f"run `{deploy}` first; it creates the secret without a value")
    return arn


def run(aws: Aws, target: Target, ui: Ui, name: str, reader: Callable[[Ui, str], str] = read_value,
        declared: list[str] | None = None) -> int:
    """Store a value for `name`: one of `declared` (the environment's backend.secrets) or `git-token`."""
    choices = known_secrets(declared if declared is not None else [n for n, k in KNOWN.items()
                                                                     if k.level == "environment"])
    known = choices.get(name)
    if known is None:
        where = f"{target.config_file}: backend.secrets" if target.kind == "environment" else "the account"
        raise UsageError(f"unknown secret {name!r}", f"declared secrets ({where}): {', '.join(sorted(choices))}",
                         "use one of those names, or add it to backend.secrets and `make render`, `adkit deploy`")
    stored = check_value(known, name, reader(ui, name))   # every check of the value before any AWS call
    preflight.identity(aws, target)
    arn = _arn(aws, target, known, name)
    try:
        aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=stored)
    except ClientError as exc:  # the message names the secret, never the value
        raise _store_failed(exc, target, known, name, arn) from None
    ui.info(f"Stored a new value for {name} ({known.purpose}) in {arn.split(':')[-1]}.", "bold green")
    if known.level == "account":
        ui.info("Amplify reads this token through a dynamic reference when CloudFormation creates or updates the "
                "frontend app; the next `adkit deploy ENV` that touches the app passes it on.")
        return EXIT_OK
    outputs = stacks.outputs(stacks.describe(aws, target.stack_name))
    _redeploy_workers(aws, target, ui, name, outputs)
    service = outputs.get("BackendServiceArn")
    if service and is_ecs_service(service):
        return _redeploy_ecs(aws, target, ui, service)
    if not service:
        ui.warn("the stack has no BackendServiceArn output yet, so no App Runner deployment was started. "
                f"App Runner reads secrets when it deploys: `adkit deploy {target.label}` (or, once the service "
                "exists, `aws apprunner start-deployment --service-arn <BackendServiceArn>`) picks the value up.")
        return EXIT_OK
    start = f"aws apprunner start-deployment --service-arn {service} --region {target.region}"
    with _starting_deployment("App Runner", start, deployment="a deployment", doing="waiting for the service",
                              when=" once the service is RUNNING"):
        _wait_not_busy(aws, service, ui, start)
        operation = aws.client("apprunner").start_deployment(ServiceArn=service)["OperationId"]
    ui.info(f"Started App Runner deployment {operation}: App Runner reads secrets only when it deploys, so the "
            "service uses the new value once this deployment finishes (a few minutes).")
    return EXIT_OK


@contextlib.contextmanager
def _starting_deployment(platform: str, command: str, *, deployment: str, doing: str, when: str = ""):
    """Around starting the `platform` deployment that picks the stored value up: a refusal (ClientError) raises
    DeployFailed and Ctrl-C raises Interrupted, both saying the value is stored and giving `command`, which starts
    the deployment by hand (`when`: the condition for running it, e.g. " once the service is RUNNING")."""
    try:
        yield
    except ClientError as exc:
        raise DeployFailed(f"the value is stored, but {platform} did not start {deployment}",
                           exc.response.get("Error", {}).get("Message", str(exc)),
                           f"start it yourself{when}: {command}") from None
    except KeyboardInterrupt:
        raise Interrupted(f"the value is stored, but no {platform} deployment was started",
                          f"interrupted while {doing}", f"start it yourself: {command}") from None


def _store_failed(exc: ClientError, target: Target, known: Known, name: str, arn: str) -> DeployError:
    """Advice that fits why PutSecretValue failed: secret gone, scheduled for deletion, denied, other."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code"), (error.get("Message") or "").rstrip(".")
    deploy = f"adkit deploy {target.label}" if known.level == "environment" else "adkit bootstrap"
    if code == "ResourceNotFoundException":
        return DeployFailed(f"could not store {name}", f"the secret {arn} does not exist ({message})",
                            f"its stack names a secret that was deleted outside CloudFormation; run `{deploy}` "
                            "so CloudFormation creates it again, then retry")
    if code == "InvalidRequestException" and "deletion" in message:
        return DeployFailed(f"could not store {name}", f"the secret is scheduled for deletion ({message})",
                            f"restore it: `aws secretsmanager restore-secret --secret-id {arn} --region "
                            f"{target.region}`, then retry")
    if code in aws_errors.DENIED_CODES:
        return DeployFailed(f"could not store {name}", f"{code}: {message}",
                            "check that your role may call secretsmanager:PutSecretValue and kms:GenerateDataKey "
                            "on the secret's key")
    return aws_errors.explain(exc, f"storing {name}")


def _redeploy_workers(aws: Aws, target: Target, ui: Ui, name: str, outputs: dict[str, str]) -> None:
    """ECS injects secrets when it starts a task: a new deployment of the worker service (forceNewDeployment)
    replaces its tasks, which then read the new value. Running workers get SIGTERM and release their runs
    (the next task resumes them from the checkpoint). Nothing to do for an environment without workers."""
    cluster, service = outputs.get("WorkerClusterName"), outputs.get("WorkerServiceName")
    if not (cluster and service):
        return
    command = (f"aws ecs update-service --cluster {cluster} --service {service} --force-new-deployment "
               f"--region {target.region}")
    try:
        deployment = aws.client("ecs").update_service(cluster=cluster, service=service, forceNewDeployment=True)
    except ClientError as exc:
        raise DeployFailed(f"the value of {name} is stored, but the worker service was not redeployed",
                           exc.response.get("Error", {}).get("Message", str(exc)),
                           f"the backend was not redeployed either; check that your role may call ecs:UpdateService, "
                           f"then run `adkit secrets set` again or: {command}") from None
    primary = next((d for d in deployment["service"].get("deployments", []) if d.get("status") == "PRIMARY"), {})
    ui.info(f"Started a new deployment of the worker service {service}"
            + (f" ({primary['id']})" if primary.get("id") else "")
            + ": ECS injects secrets when it starts a task, so new worker tasks use the new value; running "
              "ones stop gracefully and their runs resume on the new tasks.")


def is_ecs_service(arn: str) -> bool:
    """An ECS service ARN (ECS Express Mode): arn:<partition>:ecs:<region>:<account>:service/<cluster>/<name>."""
    parts = arn.split(":")
    return len(parts) >= 6 and parts[2] == "ecs" and parts[5].startswith("service/")


def _redeploy_ecs(aws: Aws, target: Target, ui: Ui, service: str) -> int:
    """ECS injects secrets when a task starts: a forced new deployment replaces every task (rolling, behind the
    load balancer), so the service runs the new value once it finishes. ECS Express Mode's own update API has no
    "force" option, so the standard UpdateService call does it; it changes no configuration Express manages."""
    cluster = service.split(":", 5)[5].split("/")[1]
    command = (f"aws ecs update-service --cluster {cluster} --service {service} --force-new-deployment "
               f"--region {target.region}")
    with _starting_deployment("ECS", command, deployment="a new deployment", doing="asking ECS"):
        answer = aws.client("ecs").update_service(cluster=cluster, service=service, forceNewDeployment=True)
    deployments = answer.get("service", {}).get("deployments", [])
    started = next((d.get("id") for d in deployments if d.get("status") == "PRIMARY"), None)
    ui.info(f"Started ECS deployment {started or '(id not returned)'}: ECS reads secrets when a task starts, so "
            "the service uses the new value once the new tasks replace the old ones (a few minutes).")
    return EXIT_OK


def _wait_not_busy(aws: Aws, service: str, ui: Ui, start: str) -> None:
    """StartDeployment is refused while the service runs another operation (OPERATION_IN_PROGRESS, e.g. a
    deploy that may have read the old value): wait for it, bounded; refuse for a paused or failed service."""
    apprunner = aws.client("apprunner")
    deadline = time.monotonic() + APP_RUNNER_WAIT_SECONDS
    said = False
    while True:
        status = apprunner.describe_service(ServiceArn=service)["Service"]["Status"]
        if status == "RUNNING":
            return
        if status != "OPERATION_IN_PROGRESS":
            raise DeployFailed("the value is stored, but App Runner cannot deploy it now",
                               f"the service is {status}",
                               "resume a PAUSED service first (`aws apprunner resume-service --service-arn "
                               f"{service}`), or fix a failed one (`adkit deploy`); then: {start}")
        if time.monotonic() >= deadline:
            raise DeployFailed("the value is stored, but App Runner did not start a deployment",
                               f"the service was still busy (OPERATION_IN_PROGRESS) after "
                               f"{APP_RUNNER_WAIT_SECONDS // 60} minutes",
                               f"start it when the running operation ends: {start}")
        if not said:
            ui.info("App Runner is busy with another operation; waiting for it to finish before deploying the "
                    "new value (that operation may have read the old one).")
            said = True
        time.sleep(poll_seconds())
