"""What every backend platform's stack shares: the contract's inputs, the image, the plain variables and the
IAM action lists (App Runner in `backend.py`, ECS Express Mode in `backend_express.py`; neither imports the other).
"""

from __future__ import annotations

from awacs import ecr as awacs_ecr
from awacs import kms as awacs_kms
from awacs import sqs as awacs_sqs
from awacs.aws import Allow, Condition, ForAnyValueStringEquals, Statement, StringEquals
from troposphere import Ref, Sub, Template

from generator import contract, naming
from generator.cfn import add_image_tag_parameter, add_parameter
from generator.config import EnvironmentConfig, secret_variable

ECR_PULL_ACTIONS = (awacs_ecr.BatchCheckLayerAvailability, awacs_ecr.BatchGetImage, awacs_ecr.DescribeImages,
                    awacs_ecr.GetDownloadUrlForLayer)


def image_identifier(config: EnvironmentConfig) -> Sub:
    """`<account>.dkr.ecr.<region>.<suffix>/<app>/backend:${ImageTag}` (the bootstrap repository)."""
    repository = naming.ecr_repository_name(config.app_name)
    return Sub(f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{repository}:${{ImageTag}}")


def environment_variables(config: EnvironmentConfig) -> dict[str, object]:
    """The app contract's plain variables (never PORT: App Runner sets it from the service port), then the
    application's own (`[backend.environment]`; the config refuses the contract's names, PORT, AWS's prefixes)."""
    values = {
        contract.ENVIRONMENT: config.name,
        contract.REGION: Ref("AWS::Region"),
        contract.DB_HOST: Ref("DatabaseEndpoint"),
        contract.DB_PORT: Ref("DatabasePort"),
        contract.DB_NAME: Ref("DatabaseName"),
        contract.DB_SECRET_ARN: Ref("DatabaseSecretArn"),
        contract.DB_SSLMODE: "require",
        contract.CONTENT_BUCKET: Ref("ContentBucketName"),
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


def add_parameters(template: Template, config: EnvironmentConfig) -> None:
    """The backend contract's inputs, the same on every platform (the root wires them by name)."""
    add_image_tag_parameter(template)
    add_parameter(template, "DataKeyArn", "Data KMS key (App Runner image copy, secrets)")
    add_parameter(template, "OpsKeyArn", "Operations KMS key (log groups)")
    add_parameter(template, "AppSubnetIds", "Private app subnets (route to NAT) for the VPC connector",
                  type_="List<AWS::EC2::Subnet::Id>")
    add_parameter(template, "ConnectorSecurityGroupId", "Security group of the VPC connector",
                  type_="AWS::EC2::SecurityGroup::Id")
    add_data_parameters(template)
    for name in config.backend.secrets:
        add_parameter(template, naming.app_secret_output(name), f"ARN of the secret {name} (secrets stack)")
    add_parameter(template, "FrontendOrigins", "Comma-separated https origins allowed by CORS")


def add_run_queue_parameters(template: Template, config: EnvironmentConfig) -> None:
    """With workers: the run queue the API enqueues into (the workers stack's outputs, wired by name)."""
    if config.workers.enabled:
        add_parameter(template, "RunQueueUrl", "URL of the workers' run queue (the API enqueues run ids)")
        add_parameter(template, "RunQueueArn", "ARN of the workers' run queue")


def enqueue_runs(config: EnvironmentConfig) -> list[Statement]:
    """With workers: send to the run queue. SSE-KMS makes a sender need GenerateDataKey and Decrypt on the queue's
    key (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html)."""
    if not config.workers.enabled:
        return []
    return [
        Statement(Sid="EnqueueRuns", Effect=Allow, Action=[awacs_sqs.SendMessage], Resource=[Ref("RunQueueArn")]),
        Statement(Sid="EncryptRunMessages", Effect=Allow, Action=[awacs_kms.Decrypt, awacs_kms.GenerateDataKey],
                  Resource=[Ref("DataKeyArn")],
                  Condition=Condition(StringEquals("kms:ViaService", Sub("sqs.${AWS::Region}.amazonaws.com")))),
    ]
