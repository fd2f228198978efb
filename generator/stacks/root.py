"""Root stack of one environment: composes the nested stacks and wires outputs to parameters.

Wiring is by name: a child's parameter `X` is fed from the root parameter `X` or from the one earlier
child that outputs `X` (as `GetAtt(Child, "Outputs.X")`). Output names are unique across children,
so the contract between stacks is visible in each child's Parameters and Outputs sections alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from troposphere import GetAtt, Ref, Tags, Template, cloudformation

from generator import contract, naming
from generator.cfn import add_output, add_parameter, describe, new_template, skip_cfn_lint
from generator.config import EnvironmentConfig
from generator.stacks import backend, data, frontend, frontend_branch, monitoring, network, secrets, security

ROOT_FILE = "root.yaml"
IMAGE_TAG = contract.IMAGE_TAG_PARAMETER
IMAGE_TAG_PATTERN = contract.IMAGE_TAG_PATTERN  # refuses `latest`: images are promoted by immutable tag

# Creation order; a child may use outputs of the children before it.
CHILDREN: tuple[ModuleType, ...] = (security, network, frontend, data, secrets, backend, frontend_branch,
                                    monitoring)

# Root outputs: name -> (child stack, child output, description)
ROOT_OUTPUTS = {
    "BackendUrl": ("backend", "ServiceUrl", "HTTPS URL of the App Runner backend"),
    "BackendServiceArn": ("backend", "ServiceArn", "ARN of the App Runner service (start-deployment target)"),
    "FrontendUrl": ("frontend", "BranchUrl", "HTTPS URL of the Amplify branch for this environment"),
    "AmplifyAppId": ("frontend", "AppId", "Amplify app id"),
    "DatabaseSecretArn": ("data", "DatabaseSecretArn", "Aurora-managed master secret (rotates every 7 days)"),
    "DatabaseClusterIdentifier": ("data", "ClusterIdentifier", "Aurora cluster identifier (restore source)"),
    "ContentBucketName": ("data", "ContentBucketName", "S3 bucket for uploaded content"),
    "AlertTopicArn": ("monitoring", "AlertTopicArn", "SNS topic that receives every alarm"),
    "DashboardUrl": ("monitoring", "DashboardUrl", "CloudWatch dashboard for this environment"),
}


@dataclass(frozen=True)
class Child:
    module: ModuleType
    template: Template

    @property
    def name(self) -> str:
        """Stack name inside the environment (the module name): network, backend, ..."""
        return self.module.__name__.rsplit(".", 1)[-1]

    @property
    def component(self) -> str:
        """Value of the Component tag (cost tracking); two stacks may share one."""
        return self.module.COMPONENT

    @property
    def logical_id(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def filename(self) -> str:
        return f"{self.name}.yaml"


class WiringError(ValueError):
    """A child parameter has no source, or two children claim the same output name."""


def build_children(config: EnvironmentConfig) -> list[Child]:
    return [Child(module, module.build(config)) for module in CHILDREN]


def _sources(children: list[Child]) -> dict[str, dict[str, Child]]:
    seen: dict[str, Child] = {}
    available: dict[str, dict[str, Child]] = {}
    for child in children:
        available[child.name] = dict(seen)
        for output in child.template.outputs:
            if output in seen:
                raise WiringError(f"output {output!r} is defined by both {seen[output].name} and "
                                  f"{child.name}; output names must be unique across stacks")
            seen[output] = child
    return available


def build(config: EnvironmentConfig, children: list[Child]) -> Template:
    naming.validate_environment_names(config)
    template = new_template(
        f"{config.app_name} {config.name}: root stack composing the environment's nested stacks "
        "(rendered by adagency-deploy-kit; do not edit by hand)")
    add_parameter(
        template, IMAGE_TAG, "Backend image tag in the ECR repository (the commit SHA); `latest` is refused",
        AllowedPattern=IMAGE_TAG_PATTERN, MinLength=1, MaxLength=128,
        ConstraintDescription="must be an immutable image tag such as a commit SHA, never 'latest'",
    )
    template.set_metadata({"AWS::CloudFormation::Interface": {
        "ParameterGroups": [{"Label": {"default": "Release"}, "Parameters": [IMAGE_TAG]}],
        "ParameterLabels": {IMAGE_TAG: {"default": "Backend image tag (commit SHA)"}},
    }})

    available = _sources(children)
    by_name = {child.name: child for child in children}
    for child in children:
        parameters = {}
        for name in sorted(child.template.parameters):
            if name in template.parameters:
                parameters[name] = Ref(name)
            elif name in available[child.name]:
                source = available[child.name][name]
                parameters[name] = GetAtt(source.logical_id, f"Outputs.{name}")
            else:
                raise WiringError(f"{child.name} stack parameter {name!r} has no source: no root parameter "
                                  "and no earlier stack outputs it")
        stack = cloudformation.Stack(
            child.logical_id,
            TemplateURL=child.filename,
            Tags=Tags(**naming.environment_tags(config, child.component)),
        )
        if parameters:
            stack.Parameters = parameters
        describe(stack, child.module.DESCRIPTION)
        # Explicit on purpose: removing a child deletes its stack, while the stateful resources inside keep
        # their own Retain/Snapshot policies (database snapshot, buckets, keys, vault are never lost).
        stack.DeletionPolicy = "Delete"
        stack.UpdateReplacePolicy = "Delete"
        skip_cfn_lint(stack, "W3002", "relative TemplateURL on purpose: `aws cloudformation package` or "
                      "`adkit deploy` uploads the child and rewrites it to an S3 URL")
        template.add_resource(stack)

    for name, (stack, output, description) in ROOT_OUTPUTS.items():
        child = by_name[stack]
        if output not in child.template.outputs:
            raise WiringError(f"root output {name} expects output {output!r} from the {stack} stack")
        add_output(template, name, GetAtt(child.logical_id, f"Outputs.{output}"), description)
    # One per application secret (backend.secrets): `adkit secrets set ENV NAME` finds the secret here.
    for secret in config.backend.secrets:
        output = naming.app_secret_output(secret)
        add_output(template, output, GetAtt(by_name["secrets"].logical_id, f"Outputs.{output}"),
                   f"Secret {secret}: set it with `adkit secrets set {config.name} {secret}`")
    return template


def template_configuration(config: EnvironmentConfig) -> dict:
    """CodePipeline TemplateConfiguration: stack tags; ImageTag is supplied per release."""
    return {"Parameters": {}, "Tags": naming.environment_tags(config)}
