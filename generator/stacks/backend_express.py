"""Backend stack on Amazon ECS Express Mode: the same contract as the App Runner stack, on Fargate.

Rendered as the environment's `backend` stack when `backend.platform = "ecs-express"`, with the same
Parameters and the same contract outputs (`ServiceUrl` as https://, `ServiceArn`, `ServiceId`, `Platform`),
so switching platforms updates the nested stack `Backend` in place and nothing else changes but the URL.

- `AWS::ECS::ExpressGatewayService` in an ECS cluster of its own (Fargate, Container Insights on): ECS
  provisions the Application Load Balancer, HTTPS listener and certificate on an AWS-provided domain,
  target groups, security groups for the load balancer, autoscaling and deployment alarms
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/express-service-work.html).
- Tasks in the private app subnets with the connector security group, so the database rule
  "5432 from the backend's security group only" holds unchanged; egress through the NAT as today.
- Image `<account>.dkr.ecr.<region>.<suffix>/<app>/backend:<ImageTag>`; plain variables exactly as
  `generator.contract.PLAIN_VARIABLES` plus `PORT` (App Runner sets it; ECS does not); the Gemini key by
  ARN in the task definition's secrets (ECS reads it when a task starts). The DB secret is still read at
  runtime by the service.
- Execution role (ECR pull of the one repository, the stack's log group, the declared secrets), task role
  (as the App Runner instance role, without the Gemini secret, which the execution role injects),
  infrastructure role with the AWS managed policy for Express Mode (see `_infrastructure_role`).
- Autoscaling on ALB requests per task (`backend.requests_per_target`), bounds from min/max_instances.
- The shared WAF web ACL associated with the load balancer ECS manages for the service.
- No ServiceName: the service's Tags are create-only (and stack tags propagate to it), so a tag change
  replaces the service, which CloudFormation can only do when the name is not fixed; ECS generates a unique
  name when none is given. Everything that needs the name (metric dimensions) takes it from the ServiceArn.
"""

from __future__ import annotations

from awacs import logs as awacs_logs
from awacs import secretsmanager as awacs_secretsmanager
from awacs.aws import Allow, PolicyDocument, Statement
from awacs.helpers.trust import make_simple_assume_policy
from troposphere import GetAtt, Join, Ref, Select, Split, Sub, Template, ecs, iam, wafv2

from generator import contract, naming
from generator.backend_metrics import BackendMetrics, Metric
from generator.cfn import add_output, describe, new_template
from generator.components import log_group, never_touch_iam, service_trust
from generator.config import ECS_EXPRESS, EnvironmentConfig
from generator.stacks import _backend as shared
from generator.stacks._waf import LOAD_BALANCER, waf_logging, web_acl
from generator.stacks.spec import StackSpec

COMPONENT = "backend"
DESCRIPTION = "ECS Express Mode service (Fargate behind an ECS-managed ALB) in the app subnets, with WAF"
PLATFORM = ECS_EXPRESS

SCALING_METRIC = "REQUEST_COUNT_PER_TARGET"
LOG_STREAM_PREFIX = "backend"
SERVICE_LOGICAL_ID = "ExpressService"
INFRASTRUCTURE_POLICY = "AmazonECSInfrastructureRoleforExpressGatewayServices"
LOAD_BALANCER_ARN = "ECSManagedResourceArns.IngressPath.LoadBalancerArn"
# The LoadBalancer metric dimension is the ARN's tail after "loadbalancer/": app/<name>/<id>
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html).
LOAD_BALANCER_OUTPUT = "LoadBalancerFullName"


def environment_variables(config: EnvironmentConfig) -> dict[str, object]:
    """The contract's plain variables plus PORT: App Runner sets PORT from the service port, ECS does not."""
    return {**shared.environment_variables(config), contract.PORT: str(config.backend.port)}


def metrics(config: EnvironmentConfig) -> BackendMetrics:
    """ALB metrics of the managed load balancer, ECS metrics of the service, task counts from Container
    Insights (enabled on the cluster, so `ECS/ContainerInsights` is published)."""
    alb = (("LoadBalancer", f"${{{LOAD_BALANCER_OUTPUT}}}"),)
    service = (("ClusterName", naming.ecs_backend_cluster_name(config)), ("ServiceName", "${ServiceName}"))
    return BackendMetrics(
        platform=PLATFORM,
        title="ECS Express Mode",
        parameters={LOAD_BALANCER_OUTPUT: "Load balancer of the backend, app/<name>/<id> (ALB metric dimension)",
                    "ServiceName": "ECS service name of the backend (metric dimension ServiceName)"},
        requests=Metric("AWS/ApplicationELB", "RequestCount", alb),
        errors_5xx=(Metric("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", alb),
                    Metric("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", alb)),
        latency=Metric("AWS/ApplicationELB", "TargetResponseTime", alb, "p99"),
        latency_per_ms=0.001,
        instances=Metric("ECS/ContainerInsights", "RunningTaskCount", service, "Maximum"),
        desired=Metric("ECS/ContainerInsights", "DesiredTaskCount", service, "Minimum"),
        cpu=Metric("AWS/ECS", "CPUUtilization", service, "Average"),
        memory=Metric("AWS/ECS", "MemoryUtilization", service, "Average"),
    )


def service_name(service: ecs.ExpressGatewayService) -> Select:
    """The name ECS gave the service: its ARN (`Ref`) is `arn:...:service/<cluster>/<name>`, and ECS generates
    a unique name when `ServiceName` is absent
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateExpressGatewayService.html,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-account-settings.html#ecs-resource-ids)."""
    return Select(2, Split("/", Ref(service)))


def _execution_role(config: EnvironmentConfig, group) -> iam.Role:
    return describe(iam.Role(
        "ExecutionRole",
        AssumeRolePolicyDocument=make_simple_assume_policy("ecs-tasks.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="start-task", PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
            *shared.image_pull_statements(config),
            Statement(
                Sid="WriteContainerLogs",
                Effect=Allow,
                Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
                Resource=[GetAtt(group, "Arn")],
            ),
            Statement(
                Sid="InjectDeclaredSecrets",
                Effect=Allow,
                Action=[awacs_secretsmanager.GetSecretValue],
                Resource=[Ref(parameter) for parameter in shared.secret_variables(config).values()],
            ),
            shared.decrypt_secrets_with_data_key(),
        ]))],
    ), "Role ECS uses to start backend tasks: image pull, logs, the declared secrets")


def _task_role(config: EnvironmentConfig) -> iam.Role:
    return describe(iam.Role(
        "TaskRole",
        # aws:SourceAccount/aws:SourceArn as the ECS task-role guide recommends (confused deputy).
        AssumeRolePolicyDocument=service_trust(
            "ecs-tasks.amazonaws.com", "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*"),
        ManagedPolicyArns=[Ref("DataAccessPolicyArn")],  # DB secret + content bucket objects (data stack)
        Policies=[iam.Policy(PolicyName="backend", PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
            shared.decrypt_secrets_with_data_key(),
            *shared.enqueue_runs(config),
            never_touch_iam(),
        ]))],
    ), "Role the backend containers run as (least privilege)")


def _infrastructure_role() -> iam.Role:
    """The role ECS Express Mode provisions the load balancer, listener rules, target groups, security groups,
    certificate, autoscaling and alarms with.

    AWS's managed policy is used: AWS documents no narrower set for Express Mode, AWS scopes its statements
    itself (e.g. iam:CreateServiceLinkedRole only for the ECS autoscaling and ELB service-linked roles; the
    rest was not read in full here), and AWS revised it from v1 to v6 in its first three months (2025-11 to
    2026-02) as Express Mode changed, so a hand-copied subset would fall behind and break without notice
    (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonECSInfrastructureRoleforExpressGatewayServices.html,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/infrastructure_IAM_role.html).
    """
    return describe(iam.Role(
        "InfrastructureRole",
        # The trust policy the infrastructure-role guide shows; no source conditions are documented for it.
        AssumeRolePolicyDocument=make_simple_assume_policy("ecs.amazonaws.com"),
        ManagedPolicyArns=[Sub(f"arn:${{AWS::Partition}}:iam::aws:policy/service-role/{INFRASTRUCTURE_POLICY}")],
    ), "Role ECS Express Mode manages the load balancer, certificate, security groups and scaling with")


@shared.contract_docstring(
    outputs="ServiceUrl, ServiceArn, ServiceId, ServiceName, LoadBalancerFullName, Platform (`ecs-express`)")
def build(config: EnvironmentConfig) -> Template:
    """Backend stack on ECS Express Mode: cluster, Express Gateway service, roles, log group, WAF on the ALB."""
    backend = config.backend
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    shared.add_parameters(template, config)
    shared.add_run_queue_parameters(template, config)

    cluster = template.add_resource(describe(ecs.Cluster(
        "Cluster",
        ClusterName=naming.ecs_backend_cluster_name(config),
        ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value="enabled")],
        CapacityProviders=["FARGATE"],
        DefaultCapacityProviderStrategy=[ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE", Weight=1)],
    ), "ECS cluster of the backend service (Fargate, Container Insights for task-count metrics)"))
    group = log_group(
        template, "ServiceLogs", description="Application logs of the backend containers",
        kms_key_arn=Ref("OpsKeyArn"), retention_days=config.logging.retention_days, retain=config.production)
    execution_role = template.add_resource(_execution_role(config, group))
    task_role = template.add_resource(_task_role(config))
    infrastructure_role = template.add_resource(_infrastructure_role())

    variables = environment_variables(config)
    service = template.add_resource(describe(ecs.ExpressGatewayService(
        # Not "Service": CloudFormation refuses to change the type behind a logical id, and App Runner's
        # stack calls its service "Service"; a new id lets a platform switch update the stack in place.
        SERVICE_LOGICAL_ID,
        Cluster=Ref(cluster),
        Cpu=backend.cpu,
        Memory=backend.memory,
        ExecutionRoleArn=GetAtt(execution_role, "Arn"),
        TaskRoleArn=GetAtt(task_role, "Arn"),
        InfrastructureRoleArn=GetAtt(infrastructure_role, "Arn"),
        HealthCheckPath=backend.health_check_path,
        NetworkConfiguration=ecs.ExpressGatewayServiceNetworkConfiguration(
            Subnets=Ref("AppSubnetIds"), SecurityGroups=[Ref("ConnectorSecurityGroupId")]),
        PrimaryContainer=ecs.ExpressGatewayContainer(
            Image=shared.image_identifier(config),
            ContainerPort=backend.port,
            Environment=[ecs.KeyValuePair(Name=name, Value=value) for name, value in variables.items()],
            Secrets=[ecs.Secret(Name=variable, ValueFrom=Ref(parameter))
                     for variable, parameter in shared.secret_variables(config).items()],
            AwsLogsConfiguration=ecs.ExpressGatewayServiceAwsLogsConfiguration(
                LogGroup=Ref(group), LogStreamPrefix=LOG_STREAM_PREFIX),
        ),
        ScalingTarget=ecs.ExpressGatewayScalingTarget(
            AutoScalingMetric=SCALING_METRIC, AutoScalingTargetValue=backend.requests_per_target,
            MinTaskCount=backend.min_instances, MaxTaskCount=backend.max_instances),
    ), "ECS Express Mode service running the backend image"))

    acl = template.add_resource(web_acl(config, protects=LOAD_BALANCER))
    template.add_resource(describe(wafv2.WebACLAssociation(
        "WebAclAssociation", ResourceArn=GetAtt(service, LOAD_BALANCER_ARN), WebACLArn=GetAtt(acl, "Arn"),
    ), "Attaches the WAF web ACL to the load balancer ECS manages for the service"))
    waf_logging(template, config, acl)

    # Endpoint is the service's host name on the AWS-provided domain; any "https://" is stripped first, so
    # the URL is right whether or not the attribute carries the scheme (UNCONFIRMED which, docs/backend-platforms.md).
    host = Join("", Split("https://", GetAtt(service, "Endpoint")))
    add_output(template, "ServiceUrl", Sub("https://${Host}", Host=host), "HTTPS URL of the backend")
    add_output(template, "ServiceArn", Ref(service), "ARN of the ECS Express Mode service (redeploy target)")
    add_output(template, "ServiceId", service_name(service), "Name of the ECS service (ECS generates it)")
    add_output(template, "ServiceName", service_name(service),
               "Name of the ECS service, from its ARN (metric dimension ServiceName)")
    add_output(template, "Platform", PLATFORM, "Backend platform of this environment")
    add_output(template, LOAD_BALANCER_OUTPUT, Select(1, Split(":loadbalancer/", GetAtt(service, LOAD_BALANCER_ARN))),
               "Load balancer of the backend as app/<name>/<id> (ALB metric dimension)")
    return template


# The same nested stack as App Runner (name `backend`): switching platform updates it in place.
SPEC = StackSpec(name="backend", component=COMPONENT, description=DESCRIPTION, build=build)
