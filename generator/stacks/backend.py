"""Backend stack: the App Runner service (FastAPI image from the bootstrap ECR repository) behind a WAF.

- Image `<account>.dkr.ecr.<region>.<suffix>/<app>/backend:<ImageTag>`; auto-deployments off, so only a
  stack update (a new ImageTag) changes what runs.
- Access role (ECR pull of that one repository) and instance role (the Gemini secret, the data key through
  Secrets Manager, X-Ray, the data stack's access policy; an explicit deny on IAM).
- All egress through a VPC connector in the private app subnets; public HTTPS ingress.
- Autoscaling, observability (X-Ray) and health check from config; App Runner's copy of the image is
  encrypted with the environment's data key.
- Plain environment variables: the contract's (`generator.contract.PLAIN_VARIABLES`), then the application's own
  (`[backend.environment]`); every secret of `backend.secrets` by ARN as its upper-snake-case variable.
- Regional WAF web ACL (rate limit + AWS managed common and known-bad-inputs rules), logging blocked and
  counted requests to a KMS-encrypted `aws-waf-logs-` group.
- A custom resource that gives App Runner's own log groups the configured retention and the ops key.
"""

from __future__ import annotations

from awacs import ecr as awacs_ecr
from awacs import iam as awacs_iam
from awacs import kms as awacs_kms
from awacs import logs as awacs_logs
from awacs import secretsmanager as awacs_secretsmanager
from awacs import xray as awacs_xray
from awacs.aws import (
    Allow,
    Condition,
    Deny,
    ForAnyValueStringEquals,
    PolicyDocument,
    Statement,
    StringEquals,
)
from awacs.helpers.trust import make_simple_assume_policy
from troposphere import GetAtt, Ref, Sub, Template, apprunner, cloudformation, iam, wafv2

from generator import contract, naming
from generator.cfn import add_image_tag_parameter, add_output, add_parameter, describe, new_template
from generator.components import inline_function
from generator.config import EnvironmentConfig, secret_variable
from generator.stacks._waf import waf_logging, web_acl
from generator.stacks.handlers import source
from generator.stacks.spec import StackSpec

COMPONENT = "backend"
DESCRIPTION = "App Runner service behind the VPC connector, with WAF"

# Health check inside App Runner's limits (each 1..20): a failed instance is replaced after ~50 s.
HEALTH_INTERVAL_SECONDS = 10
HEALTH_TIMEOUT_SECONDS = 5
HEALTHY_THRESHOLD = 1
UNHEALTHY_THRESHOLD = 5

X_RAY_ACTIONS = (awacs_xray.GetSamplingRules, awacs_xray.GetSamplingTargets, awacs_xray.PutTelemetryRecords,
                 awacs_xray.PutTraceSegments)
ECR_PULL_ACTIONS = (awacs_ecr.BatchCheckLayerAvailability, awacs_ecr.BatchGetImage, awacs_ecr.DescribeImages,
                    awacs_ecr.GetDownloadUrlForLayer)


def image_identifier(config: EnvironmentConfig) -> Sub:
    repository = naming.ecr_repository_name(config.app_name)
    return Sub(f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{repository}:${{ImageTag}}")


def environment_variables(config: EnvironmentConfig) -> dict[str, object]:
    """The app contract's plain variables (never PORT: App Runner sets it from the service port)."""
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
    # The application's own variables; config refuses the contract's names, PORT and AWS's prefixes.
    values.update(config.backend.environment)
    return values


def secret_variables(config: EnvironmentConfig) -> dict[str, str]:
    """Variable name -> parameter holding the secret's ARN, one per `backend.secrets` entry."""
    return {secret_variable(name): naming.app_secret_output(name) for name in config.backend.secrets}


def _parameters(template: Template, config: EnvironmentConfig) -> None:
    add_image_tag_parameter(template)
    add_parameter(template, "DataKeyArn", "Data KMS key (App Runner image copy, secrets)")
    add_parameter(template, "OpsKeyArn", "Operations KMS key (log groups)")
    add_parameter(template, "AppSubnetIds", "Private app subnets (route to NAT) for the VPC connector",
                  type_="List<AWS::EC2::Subnet::Id>")
    add_parameter(template, "ConnectorSecurityGroupId", "Security group of the VPC connector",
                  type_="AWS::EC2::SecurityGroup::Id")
    add_parameter(template, "DatabaseEndpoint", "Aurora writer endpoint")
    add_parameter(template, "DatabasePort", "Aurora port")
    add_parameter(template, "DatabaseName", "Database name")
    add_parameter(template, "DatabaseSecretArn", "ARN of the Aurora-managed master secret (read at runtime)")
    add_parameter(template, "ContentBucketName", "Content bucket for uploads")
    add_parameter(template, "DataAccessPolicyArn", "Managed policy: DB secret and content bucket objects")
    for name in config.backend.secrets:
        add_parameter(template, naming.app_secret_output(name), f"ARN of the secret {name} (secrets stack)")
    add_parameter(template, "FrontendOrigins", "Comma-separated https origins allowed by CORS")


def _access_role(config: EnvironmentConfig) -> iam.Role:
    repository = naming.ecr_repository_name(config.app_name)
    return describe(iam.Role(
        "AccessRole",
        AssumeRolePolicyDocument=make_simple_assume_policy("build.apprunner.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="ecr-pull", PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
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
                # The repository is encrypted with the bootstrap key. Environments never import bootstrap
                # outputs, so the key is matched by its alias, and only for use through ECR.
                Sid="DecryptImageLayers",
                Effect=Allow,
                Action=[awacs_kms.Decrypt],
                Resource=[Sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")],
                Condition=Condition([
                    ForAnyValueStringEquals("kms:ResourceAliases", naming.bootstrap_key_alias(config.app_name)),
                    StringEquals("kms:ViaService", Sub("ecr.${AWS::Region}.amazonaws.com")),
                ]),
            ),
        ]))],
    ), "Role App Runner uses to pull the backend image from ECR")


def _instance_role(config: EnvironmentConfig) -> iam.Role:
    return describe(iam.Role(
        "InstanceRole",
        AssumeRolePolicyDocument=make_simple_assume_policy("tasks.apprunner.amazonaws.com"),
        ManagedPolicyArns=[Ref("DataAccessPolicyArn")],  # DB secret + content bucket objects (data stack)
        Policies=[iam.Policy(PolicyName="backend", PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
            Statement(
                Sid="ReadApplicationSecrets",
                Effect=Allow,
                Action=[awacs_secretsmanager.GetSecretValue],
                Resource=[Ref(parameter) for parameter in secret_variables(config).values()],
            ),
            Statement(
                Sid="DecryptSecretsWithDataKey",
                Effect=Allow,
                Action=[awacs_kms.Decrypt],
                Resource=[Ref("DataKeyArn")],
                Condition=Condition(StringEquals("kms:ViaService",
                                                 Sub("secretsmanager.${AWS::Region}.amazonaws.com"))),
            ),
            Statement(
                Sid="WriteTraces",
                Effect=Allow,
                Action=list(X_RAY_ACTIONS),
                Resource=["*"],  # X-Ray has no resource-level permissions for these actions
            ),
            Statement(
                # Defence in depth: whatever a future policy attachment grants, the app never touches IAM.
                Sid="NeverTouchIam",
                Effect=Deny,
                Action=[awacs_iam.Action("*")],
                Resource=["*"],
            ),
        ]))],
    ), "Role the backend containers run as (least privilege)")


def _log_retention(template: Template, config: EnvironmentConfig, service: apprunner.Service) -> None:
    service_name = naming.app_runner_service_name(config)
    function = inline_function(
        template, "LogRetentionFunction",
        description="Sets retention and the ops key on the log groups App Runner creates for the backend",
        code=source("apprunner_log_retention"),
        statements=[Statement(
            Sid="ConfigureAppRunnerLogGroups",
            Effect=Allow,
            Action=[awacs_logs.AssociateKmsKey, awacs_logs.CreateLogGroup, awacs_logs.PutRetentionPolicy],
            Resource=[Sub(f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:"
                          f"/aws/apprunner/{service_name}/*")],
        )],
        kms_key_arn=Ref("OpsKeyArn"), log_retention_days=config.logging.retention_days,
        retain_logs=config.production, timeout=120,
    )
    template.add_resource(describe(cloudformation.CustomResource(
        "AppRunnerLogRetention",
        ServiceToken=GetAtt(function, "Arn"),
        ServiceTimeout=300,
        ServiceName=service_name,
        ServiceId=GetAtt(service, "ServiceId"),
        RetentionInDays=config.logging.retention_days,
        KmsKeyArn=Ref("OpsKeyArn"),
    ), "Retention and KMS key for App Runner's service and application log groups"))


def build(config: EnvironmentConfig) -> Template:
    backend = config.backend
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    _parameters(template, config)

    access_role = template.add_resource(_access_role(config))
    instance_role = template.add_resource(_instance_role(config))
    connector = template.add_resource(describe(apprunner.VpcConnector(
        "VpcConnector",
        Subnets=Ref("AppSubnetIds"),
        SecurityGroups=[Ref("ConnectorSecurityGroupId")],
    ), "VPC connector: all backend egress leaves through the private app subnets"))
    scaling = template.add_resource(describe(apprunner.AutoScalingConfiguration(
        "AutoScaling",  # no name: its properties are create-only, so a change must be able to replace it
        MinSize=backend.min_instances, MaxSize=backend.max_instances, MaxConcurrency=backend.max_concurrency,
    ), "Autoscaling of the backend (min/max instances, concurrent requests per instance)"))
    observability = template.add_resource(describe(apprunner.ObservabilityConfiguration(
        "Observability",
        TraceConfiguration=apprunner.TraceConfiguration(Vendor="AWSXRAY"),
    ), "X-Ray tracing for the backend"))

    variables = environment_variables(config)
    service = template.add_resource(describe(apprunner.Service(
        "Service",
        ServiceName=naming.app_runner_service_name(config),
        SourceConfiguration=apprunner.SourceConfiguration(
            AutoDeploymentsEnabled=False,
            AuthenticationConfiguration=apprunner.AuthenticationConfiguration(
                AccessRoleArn=GetAtt(access_role, "Arn")),
            ImageRepository=apprunner.ImageRepository(
                ImageIdentifier=image_identifier(config),
                ImageRepositoryType="ECR",
                ImageConfiguration=apprunner.ImageConfiguration(
                    Port=str(backend.port),
                    RuntimeEnvironmentVariables=[apprunner.KeyValuePair(Name=name, Value=value)
                                                 for name, value in variables.items()],
                    RuntimeEnvironmentSecrets=[apprunner.KeyValuePair(Name=variable, Value=Ref(parameter))
                                               for variable, parameter in secret_variables(config).items()],
                ),
            ),
        ),
        InstanceConfiguration=apprunner.InstanceConfiguration(
            Cpu=backend.cpu, Memory=backend.memory, InstanceRoleArn=GetAtt(instance_role, "Arn")),
        HealthCheckConfiguration=apprunner.HealthCheckConfiguration(
            Protocol="HTTP", Path=backend.health_check_path, Interval=HEALTH_INTERVAL_SECONDS,
            Timeout=HEALTH_TIMEOUT_SECONDS, HealthyThreshold=HEALTHY_THRESHOLD,
            UnhealthyThreshold=UNHEALTHY_THRESHOLD),
        NetworkConfiguration=apprunner.NetworkConfiguration(
            EgressConfiguration=apprunner.EgressConfiguration(EgressType="VPC", VpcConnectorArn=GetAtt(
                connector, "VpcConnectorArn")),
            IngressConfiguration=apprunner.IngressConfiguration(IsPubliclyAccessible=True),
            IpAddressType="IPV4",
        ),
        EncryptionConfiguration=apprunner.EncryptionConfiguration(KmsKey=Ref("DataKeyArn")),
        ObservabilityConfiguration=apprunner.ServiceObservabilityConfiguration(
            ObservabilityEnabled=True,
            ObservabilityConfigurationArn=GetAtt(observability, "ObservabilityConfigurationArn")),
        AutoScalingConfigurationArn=GetAtt(scaling, "AutoScalingConfigurationArn"),
    ), "App Runner service running the backend image"))

    acl = template.add_resource(web_acl(config))
    template.add_resource(describe(wafv2.WebACLAssociation(
        "WebAclAssociation", ResourceArn=GetAtt(service, "ServiceArn"), WebACLArn=GetAtt(acl, "Arn"),
    ), "Attaches the WAF web ACL to the App Runner service"))
    waf_logging(template, config, acl)
    _log_retention(template, config, service)

    add_output(template, "ServiceUrl", Sub("https://${Service.ServiceUrl}"), "HTTPS URL of the backend")
    add_output(template, "ServiceArn", GetAtt(service, "ServiceArn"), "ARN of the App Runner service")
    add_output(template, "ServiceId", GetAtt(service, "ServiceId"), "Id of the App Runner service (metrics)")
    return template


SPEC = StackSpec(name="backend", component=COMPONENT, description=DESCRIPTION, build=build)
