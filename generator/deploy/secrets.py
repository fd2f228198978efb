"""`adkit secrets set ENV NAME`: store a secret value, then let the backend pick it up.

The value is read from stdin (pipe) or a hidden prompt, sent only to Secrets Manager, and never
printed, logged or put in a template, parameter or environment variable.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import ClientError

from generator import naming
from generator.deploy import preflight, stacks
from generator.deploy.errors import EXIT_OK, DeployFailed, PreflightRefused, UsageError
from generator.deploy.session import Aws
from generator.deploy.targets import Target
from generator.deploy.ui import Ui


@dataclass(frozen=True)
class Known:
    level: str          # "environment": the env's root stack; "account": the bootstrap stack
    output: str         # stack output holding the secret ARN
    purpose: str


KNOWN = {
    "gemini-api-key": Known("environment", "GeminiApiKeySecretArn", "Gemini API key the backend calls Gemini with"),
    "git-token": Known("account", "GitTokenSecretArn", "Git provider token Amplify clones the frontend with"),
}


def read_value(ui: Ui, name: str, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """From stdin when it is not a terminal (a pipe); else a hidden prompt, asked twice."""
    if ui.inp.isatty():
        first = prompt(f"Value for {name} (hidden): ")
        if prompt(f"Again, to confirm {name}: ") != first:
            raise UsageError("the two values differ", "a typing mistake would be stored silently",
                             "run the command again")
        value = first
    else:
        value = ui.inp.read().rstrip("\r\n")
    if not value.strip():
        raise UsageError(f"empty value for {name}", "an empty secret would break its users at runtime",
                         f"pipe the value in (`adkit secrets set ENV {name} < file`) or type it at the prompt")
    return value


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


def run(aws: Aws, target: Target, ui: Ui, name: str, reader: Callable[[Ui, str], str] = read_value) -> int:
    known = KNOWN.get(name)
    if known is None:
        raise UsageError(f"unknown secret {name!r}", f"known secrets: {', '.join(sorted(KNOWN))}",
                         "use one of those names")
    preflight.identity(aws, target)
    arn = _arn(aws, target, known, name)
    value = reader(ui, name)
    try:
        aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=value)
    except ClientError as exc:  # the message names the secret, never the value
        raise DeployFailed(f"could not store {name}", exc.response.get("Error", {}).get("Message", str(exc)),
                           "check that your role may call secretsmanager:PutSecretValue and kms:GenerateDataKey "
                           "on the secret's key") from None
    ui.info(f"Stored a new value for {name} ({known.purpose}) in {arn.split(':')[-1]}.", "bold green")
    if known.level == "account":
        ui.info("Amplify reads this token through a dynamic reference when CloudFormation creates or updates the "
                "frontend app; the next `adkit deploy ENV` that touches the app passes it on.")
        return EXIT_OK
    service = stacks.outputs(stacks.describe(aws, target.stack_name)).get("BackendServiceArn")
    if not service:
        ui.warn("the stack has no BackendServiceArn output yet, so no App Runner deployment was started. "
                f"App Runner reads secrets when it deploys: `adkit deploy {target.label}` (or, once the service "
                "exists, `aws apprunner start-deployment --service-arn <BackendServiceArn>`) picks the value up.")
        return EXIT_OK
    try:
        operation = aws.client("apprunner").start_deployment(ServiceArn=service)["OperationId"]
    except ClientError as exc:
        raise DeployFailed("the value is stored, but App Runner did not start a deployment",
                           exc.response.get("Error", {}).get("Message", str(exc)),
                           f"start it yourself: aws apprunner start-deployment --service-arn {service} "
                           f"--region {target.region}") from None
    ui.info(f"Started App Runner deployment {operation}: App Runner reads secrets only when it deploys, so the "
            "service uses the new value once this deployment finishes (a few minutes).")
    return EXIT_OK
