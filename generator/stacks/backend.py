"""Backend stack: the App Runner service (FastAPI image from the bootstrap ECR repository) behind a WAF.

- Image `<account>.dkr.ecr.<region>.<suffix>/<app>/backend:<ImageTag>`; auto-deployments off, so only a
  stack update (a new ImageTag) changes what runs.
- Access role (ECR pull of that one repository) and instance role (the declared secrets, the data key through
  Secrets Manager, the data stack's access policy; an explicit deny on IAM).
- All egress through a VPC connector in the private app subnets; public HTTPS ingress.
- Autoscaling and health check from config; App Runner's copy of the image is encrypted with the
  environment's data key. X-Ray tracing is off: App Runner only forwards traces the application sends
  through the AWS Distro for OpenTelemetry, and the reference image sends none (docs/stack-backend.md).
- No ServiceName: the service's tags are create-only (and stack tags propagate to it), so a tag change
  replaces the service, which CloudFormation can only do when it names the service itself. Everything
  that needs the name (log groups, metric dimensions) takes it from the ServiceArn.
- Plain environment variables: the contract's (`generator.contract.PLAIN_VARIABLES`), then the application's own
  (`[backend.environment]`); every secret of `backend.secrets` by ARN as its upper-snake-case variable.
- Regional WAF web ACL (rate limit + AWS managed common and known-bad-inputs rules), logging blocked and
  counted requests to a KMS-encrypted `aws-waf-logs-` group.
- A custom resource that gives App Runner's own log groups the configured retention and the ops key.
"""

from __future__ import annotations

from awacs import logs as awacs_logs
from awacs import secretsmanager as awacs_secretsmanager
from awacs.aws import (
    Allow,
    PolicyDocument,
    Statement,
)
from awacs.helpers.trust import make_simple_assume_policy
from troposphere import GetAtt, Ref, Select, Split, Sub, Template, apprunner, cloudformation, iam, wafv2

from generator.backend_metrics import BackendMetrics, Metric
from generator.cfn import add_output, describe, new_template
from generator.components import inline_function, never_touch_iam
from generator.config import APP_RUNNER, EnvironmentConfig
from generator.stacks._backend import (
    add_parameters,
    add_run_queue_parameters,
    contract_docstring,
    decrypt_secrets_with_data_key,
    enqueue_runs,
    environment_variables,
    image_identifier,
    image_pull_statements,
    secret_variables,
)
from generator.stacks._waf import waf_logging, web_acl
from generator.stacks.handlers import source
from generator.stacks.spec import StackSpec

COMPONENT = "backend"
DESCRIPTION = "App Runner service behind the VPC connector, with WAF"
PLATFORM = APP_RUNNER

# Health check inside App Runner's limits (each 1..20): a failed instance is replaced after ~50 s.
HEALTH_INTERVAL_SECONDS = 10
HEALTH_TIMEOUT_SECONDS = 5
HEALTHY_THRESHOLD = 1
UNHEALTHY_THRESHOLD = 5

def metrics(config: EnvironmentConfig) -> BackendMetrics:
    """App Runner publishes per service in AWS/AppRunner, dimensioned by ServiceName and ServiceID."""
    service = (("ServiceName", "${ServiceName}"), ("ServiceID", "${ServiceId}"))

    def metric(name: str, statistic: str = "Sum") -> Metric:
        return Metric("AWS/AppRunner", name, service, statistic)

    return BackendMetrics(
        platform=PLATFORM, title="App Runner",
        parameters={"ServiceId": "App Runner service id (metric dimension ServiceID)",
                    "ServiceName": "App Runner service name (metric dimension ServiceName)"},
        requests=metric("Requests"), errors_5xx=(metric("5xxStatusResponses"),),
        latency=metric("RequestLatency", "p99"), latency_per_ms=1.0,
        instances=metric("ActiveInstances", "Maximum"), desired=None,
        cpu=metric("CPUUtilization", "Average"), memory=metric("MemoryUtilization", "Average"),
    )


def _access_role(config: EnvironmentConfig) -> iam.Role:
    return describe(iam.Role(
        "AccessRole",
        AssumeRolePolicyDocument=make_simple_assume_policy("build.apprunner.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="ecr-pull", PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
            *image_pull_statements(config),
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
            decrypt_secrets_with_data_key(),
            *enqueue_runs(config),
            never_touch_iam(),
        ]))],
    ), "Role the backend containers run as (least privilege)")


def service_name(service: apprunner.Service) -> Select:
    """The name CloudFormation gave the service: ServiceArn is `arn:...:service/<name>/<id>` (App Runner
    offers no GetAtt for the name: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-apprunner-service.html)."""
    return Select(1, Split("/", GetAtt(service, "ServiceArn")))


def _log_retention(template: Template, config: EnvironmentConfig, service: apprunner.Service) -> None:
    function = inline_function(
        template, "LogRetentionFunction",
        description="Sets retention and the ops key on the log groups App Runner creates for the backend",
        code=source("apprunner_log_retention"),
        statements=[Statement(
            Sid="ConfigureAppRunnerLogGroups",
            Effect=Allow,
            Action=[awacs_logs.AssociateKmsKey, awacs_logs.CreateLogGroup, awacs_logs.PutRetentionPolicy],
            Resource=[Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                          "/aws/apprunner/${Name}/*", Name=service_name(service))],
        )],
        kms_key_arn=Ref("OpsKeyArn"), log_retention_days=config.logging.retention_days,
        retain_logs=config.production, timeout=120,
    )
    template.add_resource(describe(cloudformation.CustomResource(
        "AppRunnerLogRetention",
        ServiceToken=GetAtt(function, "Arn"),
        ServiceTimeout=300,
        ServiceName=service_name(service),
        ServiceId=GetAtt(service, "ServiceId"),
        RetentionInDays=config.logging.retention_days,
        KmsKeyArn=Ref("OpsKeyArn"),
    ), "Retention and KMS key for App Runner's service and application log groups"))


@contract_docstring(outputs="ServiceUrl, ServiceArn, ServiceId, ServiceName, Platform (`apprunner`)")
def build(config: EnvironmentConfig) -> Template:
    """Backend stack on App Runner: the service, its VPC connector, access and instance roles, WAF, auto scaling."""
    backend = config.backend
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    add_parameters(template, config)
    add_run_queue_parameters(template, config)

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

    variables = environment_variables(config)
    service = template.add_resource(describe(apprunner.Service(
        "Service",
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
        # Off on purpose: nothing in the image emits traces (see the module docstring).
        ObservabilityConfiguration=apprunner.ServiceObservabilityConfiguration(ObservabilityEnabled=False),
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
    add_output(template, "ServiceName", service_name(service),
               "Name CloudFormation gave the App Runner service (metrics, log groups)")
    add_output(template, "Platform", PLATFORM, "Backend platform of this environment")
    return template


SPEC = StackSpec(name="backend", component=COMPONENT, description=DESCRIPTION, build=build)
