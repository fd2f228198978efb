"""What every backend platform's stack shares: the contract's inputs, the image, the plain variables and the
IAM action lists (App Runner in `backend.py`, ECS Express Mode in `backend_express.py`; neither imports the other).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from awacs import ecr as awacs_ecr
from awacs import kms as awacs_kms
from awacs import sqs as awacs_sqs
from awacs.aws import Allow, Condition, ForAnyValueStringEquals, Statement, StringEquals
from troposphere import Ref, Sub, Template

from generator import contract, naming
from generator.cfn import add_image_tag_parameter, add_parameter
from generator.config import EnvironmentConfig, secret_variable

Builder = Callable[[EnvironmentConfig], Template]

ECR_PULL_ACTIONS = (awacs_ecr.BatchCheckLayerAvailability, awacs_ecr.BatchGetImage, awacs_ecr.DescribeImages,
                    awacs_ecr.GetDownloadUrlForLayer)


def image_identifier(config: EnvironmentConfig) -> Sub:
    """`<account>.dkr.ecr.<region>.<suffix>/<app>/backend:${ImageTag}` (the bootstrap repository)."""
    repository = naming.ecr_repository_name(config.app_name)
    return Sub(f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{repository}:${{ImageTag}}")


def data_variables(config: EnvironmentConfig) -> dict[str, object]:
    """The variables every container of the app starts with, API and workers: environment, region, the
    database (from the data stack's parameters, TLS required) and the content bucket."""
    return {
        contract.ENVIRONMENT: config.name,
        contract.REGION: Ref("AWS::Region"),
        contract.DB_HOST: Ref("DatabaseEndpoint"),
        contract.DB_PORT: Ref("DatabasePort"),
        contract.DB_NAME: Ref("DatabaseName"),
        contract.DB_SECRET_ARN: Ref("DatabaseSecretArn"),
        contract.DB_SSLMODE: "require",
        contract.CONTENT_BUCKET: Ref("ContentBucketName"),
    }


def environment_variables(config: EnvironmentConfig) -> dict[str, object]:
    """The app contract's plain variables (never PORT: App Runner sets it from the service port), then the
    application's own (`[backend.environment]`; the config refuses the contract's names, PORT, AWS's prefixes)."""
    values = {
        **data_variables(config),
        contract.CORS_ALLOWED_ORIGINS: Ref("FrontendOrigins"),
        contract.SSE_MAX_STREAM_SECONDS: str(config.backend.sse_max_stream_seconds),
    }
    assert tuple(values) == contract.PLAIN_VARIABLES, "backend env vars drifted from generator.contract"
    if config.workers.enabled:  # the API enqueues runs (workers stack)
        values.update(dict(zip(contract.RUNS_API_VARIABLES, [Ref("RunQueueUrl")], strict=True)))
    values.update(config.backend.environment)
    return values



def image_pull_statements(config: EnvironmentConfig) -> list[Statement]:
    """IAM statements of the role that pulls the backend image (App Runner access role, ECS execution role):
    pull from the one bootstrap repository, registry login, and Decrypt of the image layers with the bootstrap
    key, matched by its alias (environments never import bootstrap outputs) and only through ECR."""
    repository = naming.ecr_repository_name(config.app_name)
    return [
        Statement(
            Sid="PullBackendImage",
            Effect=Allow,
            Action=list(ECR_PULL_ACTIONS),
            Resource=[Sub(f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/"
                          f"{repository}")],
        ),
        Statement(
            Sid="RegistryLogin",
            Effect=Allow,
            Action=[awacs_ecr.GetAuthorizationToken],
            Resource=["*"],  # GetAuthorizationToken is registry-wide: IAM offers no resource to scope it to
        ),
        Statement(
            Sid="DecryptImageLayers",
            Effect=Allow,
            Action=[awacs_kms.Decrypt],
            Resource=[Sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")],
            Condition=Condition([
                ForAnyValueStringEquals("kms:ResourceAliases", naming.bootstrap_key_alias(config.app_name)),
                StringEquals("kms:ViaService", Sub("ecr.${AWS::Region}.amazonaws.com")),
            ]),
        ),
    ]

def secret_variables(config: EnvironmentConfig) -> dict[str, str]:
    """Variable name -> parameter holding the secret's ARN, one per `backend.secrets` entry, in config order."""
    return {secret_variable(name): naming.app_secret_output(name) for name in config.backend.secrets}


def add_data_parameters(template: Template) -> None:
    """The data stack's outputs every container of the app reads (API and workers): database and content bucket."""
    add_parameter(template, "DatabaseEndpoint", "Aurora writer endpoint")
    add_parameter(template, "DatabasePort", "Aurora port")
    add_parameter(template, "DatabaseName", "Database name")
    add_parameter(template, "DatabaseSecretArn", "ARN of the Aurora-managed master secret (read at runtime)")
    add_parameter(template, "ContentBucketName", "Content bucket for uploads")
    add_parameter(template, "DataAccessPolicyArn", "Managed policy: DB secret and content bucket objects")


@dataclass(frozen=True)
class ContainerInputs:
    """What a container stack uses its inputs for (the parameters' descriptions): the data key, the ops key, the
    subnets, its security group as (parameter, description), and a secret ARN parameter (a format string with
    `{name}`, the `backend.secrets` entry, and `{variable}`, the variable it is injected as)."""
    data_key: str
    ops_key: str
    subnets: str
    security_group: tuple[str, str]
    secret: str


API_INPUTS = ContainerInputs(
    "Data KMS key (App Runner image copy, secrets)", "Operations KMS key (log groups)",
    "Private app subnets (route to NAT) for the VPC connector",
    ("ConnectorSecurityGroupId", "Security group of the VPC connector"), "ARN of the secret {name} (secrets stack)")


def add_container_parameters(template: Template, config: EnvironmentConfig, inputs: ContainerInputs) -> None:
    """Inputs every container stack of the app takes, API and workers, in this order: ImageTag, DataKeyArn,
    OpsKeyArn, AppSubnetIds, the tasks' security group, the data stack's outputs (`add_data_parameters`), then one
    secret ARN per `backend.secrets` entry (named by `naming.app_secret_output`)."""
    add_image_tag_parameter(template)
    add_parameter(template, "DataKeyArn", inputs.data_key)
    add_parameter(template, "OpsKeyArn", inputs.ops_key)
    add_parameter(template, "AppSubnetIds", inputs.subnets, type_="List<AWS::EC2::Subnet::Id>")
    add_parameter(template, *inputs.security_group, type_="AWS::EC2::SecurityGroup::Id")
    add_data_parameters(template)
    for name in config.backend.secrets:
        add_parameter(template, naming.app_secret_output(name),
                      inputs.secret.format(name=name, variable=secret_variable(name)))


CONTRACT_PARAMETERS_DOC = """Parameters: ImageTag (root), DataKeyArn, OpsKeyArn (from the security stack), AppSubnetIds,
ConnectorSecurityGroupId (from the network stack), FrontendOrigins (from the frontend stack), DatabaseEndpoint,
DatabasePort, DatabaseName, DatabaseSecretArn, ContentBucketName, DataAccessPolicyArn (from the data stack),
one secret ARN per application secret (from the secrets stack, named by `naming.app_secret_output`), RunQueueUrl
and RunQueueArn when workers are enabled (from the workers stack); see `_backend.add_parameters` and
`_backend.add_run_queue_parameters`."""


def contract_docstring(outputs: str) -> Callable[[Builder], Builder]:
    """Decorator for a backend platform's `build`: appends the contract's parameters (the same on every platform,
    `CONTRACT_PARAMETERS_DOC`), the platform's `outputs` and the errors it raises to the builder's docstring."""
    def document(build: Builder) -> Builder:
        summary = inspect.cleandoc(build.__doc__ or "")
        build.__doc__ = (f"{summary}\n\n{CONTRACT_PARAMETERS_DOC}\nOutputs: {outputs}. Raises: naming.NamingError "
                         "when a generated AWS name breaks its service's limit.")
        return build
    return document


def add_parameters(template: Template, config: EnvironmentConfig) -> None:
    """The backend contract's inputs, the same on every platform (the root wires them by name)."""
    add_container_parameters(template, config, API_INPUTS)
    add_parameter(template, "FrontendOrigins", "Comma-separated https origins allowed by CORS")


def add_run_queue_parameters(template: Template, config: EnvironmentConfig) -> None:
    """With workers: the run queue the API enqueues into (the workers stack's outputs, wired by name)."""
    if config.workers.enabled:
        add_parameter(template, "RunQueueUrl", "URL of the workers' run queue (the API enqueues run ids)")
        add_parameter(template, "RunQueueArn", "ARN of the workers' run queue")


def via_service(service: str) -> Condition:
    """`kms:ViaService` = `<service>.<region>.amazonaws.com`: the key may be used only through that service."""
    return Condition(StringEquals("kms:ViaService", Sub(f"{service}.${{AWS::Region}}.amazonaws.com")))


def decrypt_secrets_with_data_key() -> Statement:
    """Decrypt with the data key, only through Secrets Manager (the app's secrets are encrypted with it)."""
    return Statement(Sid="DecryptSecretsWithDataKey", Effect=Allow, Action=[awacs_kms.Decrypt],
                     Resource=[Ref("DataKeyArn")], Condition=via_service("secretsmanager"))


def enqueue_runs(config: EnvironmentConfig) -> list[Statement]:
    """With workers: send to the run queue. SSE-KMS makes a sender need GenerateDataKey and Decrypt on the queue's
    key (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html)."""
    if not config.workers.enabled:
        return []
    return [
        Statement(Sid="EnqueueRuns", Effect=Allow, Action=[awacs_sqs.SendMessage], Resource=[Ref("RunQueueArn")]),
        Statement(Sid="EncryptRunMessages", Effect=Allow, Action=[awacs_kms.Decrypt, awacs_kms.GenerateDataKey],
                  Resource=[Ref("DataKeyArn")], Condition=via_service("sqs")),
    ]
