"""The composer: which nested stacks an environment has, and the root stack that wires them together.

`children(config)` chooses the stack specs from the config (a platform picks its backend variant; an optional
stack appears when its config is on). `build_children` builds each one; `build_root` composes them.

Wiring is by name: a child's parameter `X` is fed from the root parameter `X` or from the one earlier child that
outputs `X` (as `GetAtt(Child, "Outputs.X")`). Output names are unique across children, so the contract between
stacks is visible in each child's Parameters and Outputs sections alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from troposphere import GetAtt, Ref, Tags, Template, cloudformation

from generator import naming
from generator.cfn import add_image_tag_parameter, add_output, describe, new_template, skip_cfn_lint
from generator.config import ECS_EXPRESS, EnvironmentConfig
from generator.contract import IMAGE_TAG_PARAMETER
from generator.stacks import (
    backend,
    backend_express,
    data,
    frontend,
    frontend_branch,
    monitoring,
    network,
    secrets,
    security,
    workers,
)
from generator.stacks.spec import MonitoringInputs, StackSpec

# Root outputs: name -> (child stack, child output, description)
ROOT_OUTPUTS = {
    "BackendUrl": ("backend", "ServiceUrl", "HTTPS URL of the backend"),
    "BackendServiceArn": ("backend", "ServiceArn", "ARN of the backend service (App Runner or ECS; redeploy target)"),
    "BackendPlatform": ("backend", "Platform", "Backend platform: apprunner or ecs-express"),
    "FrontendUrl": ("frontend", "BranchUrl", "HTTPS URL of the Amplify branch for this environment"),
    "AmplifyAppId": ("frontend", "AppId", "Amplify app id"),
    "DatabaseSecretArn": ("data", "DatabaseSecretArn", "Aurora-managed master secret (rotates every 7 days)"),
    "DatabaseClusterIdentifier": ("data", "ClusterIdentifier", "Aurora cluster identifier (restore source)"),
    "ContentBucketName": ("data", "ContentBucketName", "S3 bucket for uploaded content"),
    "AlertTopicArn": ("monitoring", "AlertTopicArn", "SNS topic that receives every alarm"),
    "DashboardUrl": ("monitoring", "DashboardUrl", "CloudWatch dashboard for this environment"),
}

# Root outputs of an environment with workers (`adkit secrets set` redeploys the worker service).
WORKER_OUTPUTS = {
    "WorkerClusterName": ("workers", "WorkerClusterName", "ECS cluster of the workers"),
    "WorkerServiceName": ("workers", "WorkerServiceName", "ECS service of the workers (new deployment target)"),
    "RunQueueUrl": ("workers", "RunQueueUrl", "SQS queue of runs"),
    "DeadLetterQueueUrl": ("workers", "DeadLetterQueueUrl", "Dead-letter queue of runs (inspect, redrive)"),
}


class WiringError(ValueError):
    """A child parameter has no source, or two children claim the same output name."""


def backend_module(config: EnvironmentConfig):
    """The module of the environment's backend platform (`backend` or `backend_express`)."""
    return backend_express if config.backend.platform == ECS_EXPRESS else backend


def backend_spec(config: EnvironmentConfig) -> StackSpec:
    """The backend variant of the environment's platform; every variant is the `backend` stack."""
    return backend_module(config).SPEC


def children(config: EnvironmentConfig) -> list[StackSpec]:
    """The environment's nested stacks in creation order; a child may use outputs of the children before it.

    Monitoring comes last and is told what it watches (components, NAT count, backend platform).
    """
    # Workers (optional) come before the backend: the API enqueues runs, so the backend stack takes the queue
    # URL from the workers stack's outputs (wiring only flows forward).
    specs = [security.SPEC, network.SPEC, frontend.SPEC, data.SPEC, secrets.SPEC,
             *([workers.SPEC] if config.workers.enabled else []), backend_spec(config), frontend_branch.SPEC]
    inputs = MonitoringInputs(
        components=tuple(sorted({spec.component for spec in specs} | {monitoring.COMPONENT})),
        nat_count=config.network.nat_gateway_count,
        backend_platform=config.backend.platform,
        backend_metrics=backend_module(config).metrics(config),
    )
    return [*specs, monitoring.spec(inputs)]


@dataclass(frozen=True)
class Child:
    """A built nested stack: its spec and its template."""

    spec: StackSpec
    template: Template


def build_children(config: EnvironmentConfig) -> list[Child]:
    """Build every child stack of the environment (pure). Raises ConfigError from the builders."""
    return [Child(spec, spec.build(config)) for spec in children(config)]


def _sources(children: list[Child]) -> dict[str, dict[str, Child]]:
    seen: dict[str, Child] = {}
    available: dict[str, dict[str, Child]] = {}
    for child in children:
        available[child.spec.name] = dict(seen)
        for output in child.template.outputs:
            if output in seen:
                raise WiringError(f"output {output!r} is defined by both {seen[output].spec.name} and "
                                  f"{child.spec.name}; output names must be unique across stacks")
            seen[output] = child
    return available


def build_root(config: EnvironmentConfig, children: list[Child]) -> Template:
    """Root stack of one environment: one AWS::CloudFormation::Stack per child, wired by name.

    Parameters: ImageTag. Outputs: ROOT_OUTPUTS. Raises WiringError when a child parameter has no source, two
    children output the same name, or a root output's source is missing; naming.NamingError for too-long names.
    """
    naming.validate_environment_names(config)
    template = new_template(
        f"{config.app_name} {config.name}: root stack composing the environment's nested stacks "
        "(rendered by adagency-deploy-kit; do not edit by hand)")
    add_image_tag_parameter(template)
    template.set_metadata({"AWS::CloudFormation::Interface": {
        "ParameterGroups": [{"Label": {"default": "Release"}, "Parameters": [IMAGE_TAG_PARAMETER]}],
        "ParameterLabels": {IMAGE_TAG_PARAMETER: {"default": "Backend image tag (commit SHA)"}},
    }})

    available = _sources(children)
    by_name = {child.spec.name: child for child in children}
    for child in children:
        parameters = {}
        for name in sorted(child.template.parameters):
            if name in template.parameters:
                parameters[name] = Ref(name)
            elif name in available[child.spec.name]:
                source = available[child.spec.name][name]
                parameters[name] = GetAtt(source.spec.logical_id, f"Outputs.{name}")
            else:
                raise WiringError(f"{child.spec.name} stack parameter {name!r} has no source: no root parameter "
                                  "and no earlier stack outputs it")
        stack = cloudformation.Stack(
            child.spec.logical_id,
            TemplateURL=child.spec.filename,
            Tags=Tags(**naming.environment_tags(config, child.spec.component)),
        )
        if parameters:
            stack.Parameters = parameters
        describe(stack, child.spec.description)
        # Explicit on purpose: removing a child deletes its stack, while the stateful resources inside keep
        # their own Retain/Snapshot policies (database snapshot, buckets, keys, vault are never lost).
        stack.DeletionPolicy = "Delete"
        stack.UpdateReplacePolicy = "Delete"
        skip_cfn_lint(stack, "W3002", "relative TemplateURL on purpose: `aws cloudformation package` or "
                      "`adkit deploy` uploads the child and rewrites it to an S3 URL")
        template.add_resource(stack)

    outputs = {**ROOT_OUTPUTS, **(WORKER_OUTPUTS if "workers" in by_name else {})}
    for name, (stack, output, description) in outputs.items():
        child = by_name[stack]
        if output not in child.template.outputs:
            raise WiringError(f"root output {name} expects output {output!r} from the {stack} stack")
        add_output(template, name, GetAtt(child.spec.logical_id, f"Outputs.{output}"), description)
    # One per application secret (backend.secrets): `adkit secrets set ENV NAME` finds the secret here.
    for secret in config.backend.secrets:
        output = naming.app_secret_output(secret)
        add_output(template, output, GetAtt(by_name["secrets"].spec.logical_id, f"Outputs.{output}"),
                   f"Secret {secret}: set it with `adkit secrets set {config.name} {secret}`")
    return template


def template_configuration(config: EnvironmentConfig) -> dict:
    """CodePipeline TemplateConfiguration: stack tags; ImageTag is supplied per release."""
    return {"Parameters": {}, "Tags": naming.environment_tags(config)}
