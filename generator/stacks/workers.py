"""Workers stack: durable runs of the app's LangGraph workflows, outside App Runner's request limits.

- SQS run queue (SSE-KMS with the data key, TLS-only policy, long polling) and its dead-letter queue: a run
  whose message is received `workers.max_receive_count` times without being deleted moves there (14 days).
- ECS cluster (Fargate and Fargate Spot capacity providers, Container Insights per config) and a service
  running the backend image with the worker entry point (`python -m adagency_backend worker`) in the private
  app subnets, no public IP, behind the network stack's worker security group (no ingress).
- Task role: consume the queue, read the declared secrets, the data stack's access policy (DB secret,
  content bucket). Execution role: pull that one ECR repository, write the log group, inject the secrets.
- Autoscaling on backlog per task (ApproximateNumberOfMessagesVisible + NotVisible over Container Insights'
  RunningTaskCount, CloudWatch metric math) between `min_tasks` and `max_tasks`; when `min_tasks` is 0, a
  step policy starts the first task, since target tracking cannot scale out from zero tasks.
- Graceful stop: SIGTERM, then SIGKILL after `stop_timeout_seconds` (ECS allows at most 120 s).

The worker gets exactly `generator.contract.WORKER_VARIABLES` and the declared secrets by ARN.
"""

from __future__ import annotations

from awacs import ecr as awacs_ecr
from awacs import kms as awacs_kms
from awacs import logs as awacs_logs
from awacs import secretsmanager as awacs_secretsmanager
from awacs import sqs as awacs_sqs
from awacs.aws import (
    Allow,
    Bool,
    Condition,
    Deny,
    ForAnyValueStringEquals,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from awacs.sts import AssumeRole
from troposphere import GetAtt, Ref, Sub, Template, applicationautoscaling, cloudwatch, ecs, iam, sqs

from generator import contract, naming
from generator.cfn import add_output, describe, new_template
from generator.components import log_group, never_touch_iam, retention_policies
from generator.config import EnvironmentConfig
from generator.stacks._backend import (
    ContainerInputs,
    add_container_parameters,
    data_variables,
    decrypt_secrets_with_data_key,
    image_identifier,
    secret_variables,
    via_service,
)
from generator.stacks.spec import StackSpec

COMPONENT = "workers"
DESCRIPTION = "SQS run queue and the ECS Fargate worker service that runs the workflows"

CONTAINER = "worker"
# The pipeline builds the backend image for linux/amd64 (generator/buildspecs); the task must match it.
CPU_ARCHITECTURE = "X86_64"
# `python -m adagency_backend worker`: the image's ENTRYPOINT is `python -m adagency_backend`; the task sets it
# too, so the worker does not depend on the Dockerfile keeping it.
ENTRY_POINT = ["python", "-m", "adagency_backend"]
COMMAND = list(contract.WORKER_COMMAND)
RUN_QUEUE_RETENTION_SECONDS = 4 * 24 * 3600       # SQS default (4 days), stated
# A standard queue keeps a message's original enqueue time when it moves to the DLQ, so the DLQ keeps them
# longest (14 days, SQS's maximum) for an operator to inspect and redrive.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
LONG_POLL_SECONDS = 20                            # SQS maximum: fewer empty receives
SCALE_IN_COOLDOWN_SECONDS = 300
SCALE_OUT_COOLDOWN_SECONDS = 60
# Longer than a Fargate task takes to reach RUNNING, so the scale-from-zero step adds one task, not several.
SCALE_FROM_ZERO_COOLDOWN_SECONDS = 300
METRIC_PERIOD_SECONDS = 60

ECR_PULL_ACTIONS = (awacs_ecr.BatchCheckLayerAvailability, awacs_ecr.BatchGetImage, awacs_ecr.GetDownloadUrlForLayer)
# The worker's queue calls (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
# sqs-api-permissions-reference.html); the API (backend stack) only sends.
QUEUE_CONSUMER_ACTIONS = (awacs_sqs.ChangeMessageVisibility, awacs_sqs.DeleteMessage, awacs_sqs.GetQueueAttributes,
                          awacs_sqs.ReceiveMessage)
# SSE-KMS queues: a receiver needs kms:Decrypt on the queue's key, a sender kms:GenerateDataKey and kms:Decrypt
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html).
QUEUE_CONSUMER_KMS_ACTIONS = (awacs_kms.Decrypt,)
QUEUE_PRODUCER_KMS_ACTIONS = (awacs_kms.Decrypt, awacs_kms.GenerateDataKey)


WORKER_INPUTS = ContainerInputs(
    "Data KMS key (queue encryption, secrets)", "Operations KMS key (log group)",
    "Private app subnets (route to NAT) for the worker tasks",
    ("WorkerSecurityGroupId", "Security group of the worker tasks (no ingress)"),
    "ARN of the secret injected as {variable}")


def environment_variables(config: EnvironmentConfig) -> dict[str, object]:
    """The worker's plain variables: `contract.WORKER_VARIABLES`, then the application's own
    (`[backend.environment]`, the same as the API's); no secrets."""
    workers = config.workers
    values = {
        **data_variables(config),
        contract.RUN_QUEUE_URL: Ref("RunQueue"),
        contract.WORKER_VISIBILITY_TIMEOUT_SECONDS: str(workers.visibility_timeout_seconds),
        contract.WORKER_STOP_TIMEOUT_SECONDS: str(workers.stop_timeout_seconds),
        contract.WORKER_MAX_RECEIVE_COUNT: str(workers.max_receive_count),
    }
    assert tuple(values) == contract.WORKER_VARIABLES, "worker env vars drifted from generator.contract"
    values.update(config.backend.environment)
    return values


# ---- queues -------------------------------------------------------------------------------------

def _tls_only(template: Template, logical_id: str, queue: sqs.Queue, text: str) -> None:
    template.add_resource(describe(sqs.QueuePolicy(
        logical_id,
        Queues=[Ref(queue)],
        PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[Statement(
            Sid="DenyInsecureTransport",
            Effect=Deny,
            Principal=Principal("*"),
            Action=[awacs_sqs.Action("*")],  # a Deny: every SQS action without TLS is refused
            Resource=[GetAtt(queue, "Arn")],
            Condition=Condition(Bool("aws:SecureTransport", False)),
        )]),
    ), text))


def _queues(template: Template, config: EnvironmentConfig) -> tuple[sqs.Queue, sqs.Queue]:
    workers = config.workers
    dead = sqs.Queue(
        "DeadLetterQueue",
        KmsMasterKeyId=Ref("DataKeyArn"),
        MessageRetentionPeriod=DEAD_LETTER_RETENTION_SECONDS,
    )
    # Messages are run ids only (the run itself lives in PostgreSQL); a prod stack deletion keeps the queues.
    retention_policies(dead, retain=config.production)
    template.add_resource(describe(dead, f"Dead-letter queue: runs received {workers.max_receive_count} times "
                                         "without finishing (kept 14 days)"))
    queue = sqs.Queue(
        "RunQueue",
        KmsMasterKeyId=Ref("DataKeyArn"),
        VisibilityTimeout=workers.visibility_timeout_seconds,
        MessageRetentionPeriod=RUN_QUEUE_RETENTION_SECONDS,
        ReceiveMessageWaitTimeSeconds=LONG_POLL_SECONDS,
        RedrivePolicy=sqs.RedrivePolicy(deadLetterTargetArn=GetAtt(dead, "Arn"),
                                        maxReceiveCount=workers.max_receive_count),
    )
    retention_policies(queue, retain=config.production)
    template.add_resource(describe(queue, "Run queue: the API enqueues run ids, the workers receive them"))
    _tls_only(template, "RunQueuePolicy", queue, "Run queue accepts TLS requests only")
    _tls_only(template, "DeadLetterQueuePolicy", dead, "Dead-letter queue accepts TLS requests only")
    return queue, dead


# ---- roles --------------------------------------------------------------------------------------

def _read_secrets(config: EnvironmentConfig, sid: str) -> list[Statement]:
    return [
        Statement(Sid=sid, Effect=Allow, Action=[awacs_secretsmanager.GetSecretValue],
                  Resource=[Ref(parameter) for parameter in secret_variables(config).values()]),
        decrypt_secrets_with_data_key(),
    ]


def _task_role(config: EnvironmentConfig, queue: sqs.Queue) -> iam.Role:
    return describe(iam.Role(
        "TaskRole",
        AssumeRolePolicyDocument=_ecs_tasks_trust(),
        ManagedPolicyArns=[Ref("DataAccessPolicyArn")],  # DB secret + content bucket objects (data stack)
        Policies=[iam.Policy(PolicyName="worker", PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
            Statement(Sid="ConsumeRunQueue", Effect=Allow, Action=list(QUEUE_CONSUMER_ACTIONS),
                      Resource=[GetAtt(queue, "Arn")]),
            Statement(Sid="DecryptRunMessages", Effect=Allow, Action=list(QUEUE_CONSUMER_KMS_ACTIONS),
                      Resource=[Ref("DataKeyArn")], Condition=via_service("sqs")),
            *_read_secrets(config, "ReadDeclaredSecrets"),
            never_touch_iam(),
        ]))],
    ), "Role the worker containers run as: the run queue, the declared secrets, the data access policy")


def _ecs_tasks_trust() -> PolicyDocument:
    """ecs-tasks.amazonaws.com, only for tasks of this account (confused-deputy guard)."""
    return PolicyDocument(Version="2012-10-17", Statement=[Statement(
        Effect=Allow,
        Principal=Principal("Service", "ecs-tasks.amazonaws.com"),
        Action=[AssumeRole],
        Condition=Condition(StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
    )])


def _execution_role(config: EnvironmentConfig, group) -> iam.Role:
    repository = naming.ecr_repository_name(config.app_name)
    return describe(iam.Role(
        "ExecutionRole",
        AssumeRolePolicyDocument=_ecs_tasks_trust(),
        Policies=[iam.Policy(PolicyName="start-worker", PolicyDocument=PolicyDocument(
            Version="2012-10-17", Statement=[
                Statement(
                    Sid="PullBackendImage", Effect=Allow, Action=list(ECR_PULL_ACTIONS),
                    Resource=[Sub(f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/"
                                  f"{repository}")]),
                Statement(
                    Sid="RegistryLogin", Effect=Allow, Action=[awacs_ecr.GetAuthorizationToken],
                    Resource=["*"]),  # GetAuthorizationToken is registry-wide: IAM offers no resource to scope it to
                Statement(
                    # The repository is encrypted with the bootstrap key, matched by its alias and only via ECR.
                    Sid="DecryptImageLayers", Effect=Allow, Action=[awacs_kms.Decrypt],
                    Resource=[Sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")],
                    Condition=Condition([
                        ForAnyValueStringEquals("kms:ResourceAliases", naming.bootstrap_key_alias(config.app_name)),
                        StringEquals("kms:ViaService", Sub("ecr.${AWS::Region}.amazonaws.com")),
                    ])),
                Statement(
                    Sid="WriteWorkerLogs", Effect=Allow,
                    Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
                    Resource=[GetAtt(group, "Arn")]),
                *_read_secrets(config, "InjectDeclaredSecrets"),
            ]))],
    ), "Role ECS uses to start worker tasks: image pull, logs, secret injection")


# ---- service ------------------------------------------------------------------------------------

def _cluster(template: Template, config: EnvironmentConfig) -> ecs.Cluster:
    provider = "FARGATE_SPOT" if config.workers.spot else "FARGATE"
    return template.add_resource(describe(ecs.Cluster(
        "Cluster",
        CapacityProviders=["FARGATE", "FARGATE_SPOT"],
        DefaultCapacityProviderStrategy=[ecs.CapacityProviderStrategyItem(CapacityProvider=provider, Weight=1)],
        ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value=config.workers.container_insights)],
    ), f"ECS cluster of the workers (Fargate; Container Insights {config.workers.container_insights})"))


def _task_definition(template: Template, config: EnvironmentConfig, task_role, execution_role, group):
    workers = config.workers
    container = ecs.ContainerDefinition(
        Name=CONTAINER,
        Image=image_identifier(config),
        EntryPoint=ENTRY_POINT,
        Command=COMMAND,
        Essential=True,
        User="10001:10001",  # the image's non-root app user (apprunner/Dockerfile)
        ReadonlyRootFilesystem=True,
        StopTimeout=workers.stop_timeout_seconds,
        Environment=[ecs.Environment(Name=name, Value=value)
                     for name, value in environment_variables(config).items()],
        Secrets=[ecs.Secret(Name=name, ValueFrom=Ref(parameter))
                 for name, parameter in secret_variables(config).items()],
        # Python and its libraries may write temporary files; /tmp is task storage, the rest stays read-only.
        MountPoints=[ecs.MountPoint(ContainerPath="/tmp", SourceVolume="tmp", ReadOnly=False)],
        LogConfiguration=ecs.LogConfiguration(LogDriver="awslogs", Options={
            "awslogs-group": Ref(group),
            "awslogs-region": Ref("AWS::Region"),
            "awslogs-stream-prefix": CONTAINER,
            "mode": "non-blocking",     # a slow log path never blocks the worker
            "max-buffer-size": "25m",
        }),
    )
    return template.add_resource(describe(ecs.TaskDefinition(
        "TaskDefinition",
        RequiresCompatibilities=["FARGATE"],
        NetworkMode="awsvpc",
        Cpu=str(workers.cpu),
        Memory=str(workers.memory),
        RuntimePlatform=ecs.RuntimePlatform(CpuArchitecture=CPU_ARCHITECTURE, OperatingSystemFamily="LINUX"),
        TaskRoleArn=GetAtt(task_role, "Arn"),
        ExecutionRoleArn=GetAtt(execution_role, "Arn"),
        ContainerDefinitions=[container],
        Volumes=[ecs.Volume(Name="tmp")],
    ), f"Worker task: the backend image's worker entry point, {workers.cpu} CPU units, {workers.memory} MiB"))


def _service(template: Template, config: EnvironmentConfig, cluster, task) -> ecs.Service:
    provider = "FARGATE_SPOT" if config.workers.spot else "FARGATE"
    return template.add_resource(describe(ecs.Service(
        "Service",
        Cluster=Ref(cluster),
        TaskDefinition=Ref(task),
        # Set on create (0 when idle is allowed); a stack update also resets it to min_tasks, and autoscaling
        # raises it again within minutes. A new task definition replaces every task anyway (rolling deployment).
        DesiredCount=config.workers.min_tasks,
        CapacityProviderStrategy=[ecs.CapacityProviderStrategyItem(CapacityProvider=provider, Weight=1)],
        PlatformVersion="LATEST",
        NetworkConfiguration=ecs.NetworkConfiguration(AwsvpcConfiguration=ecs.AwsvpcConfiguration(
            AssignPublicIp="DISABLED",
            Subnets=Ref("AppSubnetIds"),
            SecurityGroups=[Ref("WorkerSecurityGroupId")],
        )),
        DeploymentConfiguration=ecs.DeploymentConfiguration(
            DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
            MinimumHealthyPercent=100,
            MaximumPercent=200,
        ),
        EnableECSManagedTags=True,
        PropagateTags="SERVICE",
        EnableExecuteCommand=False,
    ), f"ECS service of the workers ({provider}, {config.workers.min_tasks}..{config.workers.max_tasks} tasks)"))


# ---- autoscaling --------------------------------------------------------------------------------

def _sqs(metric: str, queue) -> cloudwatch.MetricStat:
    return cloudwatch.MetricStat(
        Metric=cloudwatch.Metric(Namespace="AWS/SQS", MetricName=metric, Dimensions=[
            cloudwatch.MetricDimension(Name="QueueName", Value=GetAtt(queue, "QueueName"))]),
        Period=METRIC_PERIOD_SECONDS, Stat="Maximum")


def _autoscaling(template: Template, config: EnvironmentConfig, cluster, service, queue) -> None:
    """Backlog per task, target tracking; plus scale-from-zero when min_tasks = 0.

    AWS's "SQS queue backlog per task" example (https://docs.aws.amazon.com/autoscaling/application/userguide/
    application-auto-scaling-target-tracking-metric-math.html) divides ApproximateNumberOfMessagesVisible by
    ECS/ContainerInsights RunningTaskCount. Here the backlog also counts in-flight runs (NotVisible), so a
    service busy with its last run is not scaled in under it. With no running task the expression yields 0
    instead of dividing by zero, and target tracking cannot scale out from 0 tasks anyway (it multiplies
    current capacity); a step policy on "visible runs while no task runs" adds the first task.
    """
    workers = config.workers
    target = template.add_resource(describe(applicationautoscaling.ScalableTarget(
        "ScalableTarget",
        ServiceNamespace="ecs",
        ScalableDimension="ecs:service:DesiredCount",
        ResourceId=Sub("service/${Cluster}/${Service.Name}"),
        MinCapacity=workers.min_tasks,
        MaxCapacity=workers.max_tasks,
        # No RoleARN: Application Auto Scaling uses its ECS service-linked role.
    ), f"Scales the worker service between {workers.min_tasks} and {workers.max_tasks} tasks"))
    tasks = applicationautoscaling.TargetTrackingMetricStat(
        Metric=applicationautoscaling.TargetTrackingMetric(
            Namespace="ECS/ContainerInsights", MetricName="RunningTaskCount", Dimensions=[
                applicationautoscaling.TargetTrackingMetricDimension(Name="ClusterName", Value=Ref(cluster)),
                applicationautoscaling.TargetTrackingMetricDimension(Name="ServiceName",
                                                                     Value=GetAtt(service, "Name"))]),
        Stat="Average")

    def queue_stat(metric: str) -> applicationautoscaling.TargetTrackingMetricStat:
        return applicationautoscaling.TargetTrackingMetricStat(
            Metric=applicationautoscaling.TargetTrackingMetric(Namespace="AWS/SQS", MetricName=metric, Dimensions=[
                applicationautoscaling.TargetTrackingMetricDimension(Name="QueueName",
                                                                     Value=GetAtt(queue, "QueueName"))]),
            Stat="Sum")

    query = applicationautoscaling.TargetTrackingMetricDataQuery
    template.add_resource(describe(applicationautoscaling.ScalingPolicy(
        "BacklogPerTaskScaling",
        PolicyName="backlog-per-task",
        PolicyType="TargetTrackingScaling",
        ScalingTargetId=Ref(target),
        TargetTrackingScalingPolicyConfiguration=applicationautoscaling.TargetTrackingScalingPolicyConfiguration(
            TargetValue=workers.target_backlog_per_task,
            ScaleInCooldown=SCALE_IN_COOLDOWN_SECONDS,
            ScaleOutCooldown=SCALE_OUT_COOLDOWN_SECONDS,
            CustomizedMetricSpecification=applicationautoscaling.CustomizedMetricSpecification(Metrics=[
                query(Id="visible", MetricStat=queue_stat("ApproximateNumberOfMessagesVisible"), ReturnData=False),
                query(Id="inflight", MetricStat=queue_stat("ApproximateNumberOfMessagesNotVisible"),
                      ReturnData=False),
                query(Id="tasks", MetricStat=tasks, ReturnData=False),
                query(Id="backlog", Label="Runs waiting or in flight per running task", ReturnData=True,
                      Expression="IF(FILL(tasks, 0) > 0, (FILL(visible, 0) + FILL(inflight, 0)) / tasks, 0)"),
            ]),
        ),
    ), f"Target tracking: {workers.target_backlog_per_task} runs (waiting or in flight) per running task"))

    if workers.min_tasks > 0:
        return
    step = template.add_resource(describe(applicationautoscaling.ScalingPolicy(
        "ScaleFromZero",
        PolicyName="scale-from-zero",
        PolicyType="StepScaling",
        ScalingTargetId=Ref(target),
        StepScalingPolicyConfiguration=applicationautoscaling.StepScalingPolicyConfiguration(
            AdjustmentType="ChangeInCapacity",
            Cooldown=SCALE_FROM_ZERO_COOLDOWN_SECONDS,
            MetricAggregationType="Maximum",
            StepAdjustments=[applicationautoscaling.StepAdjustment(MetricIntervalLowerBound=0, ScalingAdjustment=1)],
        ),
    ), "Step scaling: one task when runs wait and no task runs (target tracking cannot leave zero)"))
    running = cloudwatch.MetricStat(
        Metric=cloudwatch.Metric(Namespace="ECS/ContainerInsights", MetricName="RunningTaskCount", Dimensions=[
            cloudwatch.MetricDimension(Name="ClusterName", Value=Ref(cluster)),
            cloudwatch.MetricDimension(Name="ServiceName", Value=GetAtt(service, "Name"))]),
        Period=METRIC_PERIOD_SECONDS, Stat="Maximum")
    template.add_resource(describe(cloudwatch.Alarm(
        "ScaleFromZeroAlarm",
        AlarmDescription="Scaling trigger (not an alert): runs are waiting in the run queue and no worker task "
                         "is running.",
        ActionsEnabled=True,
        AlarmActions=[Ref(step)],
        Metrics=[
            cloudwatch.MetricDataQuery(Id="visible", MetricStat=_sqs("ApproximateNumberOfMessagesVisible", queue),
                                       ReturnData=False),
            cloudwatch.MetricDataQuery(Id="tasks", MetricStat=running, ReturnData=False),
            cloudwatch.MetricDataQuery(Id="waiting", Label="Runs waiting while no task runs", ReturnData=True,
                                       Expression="IF(FILL(tasks, 0) == 0, FILL(visible, 0), 0)"),
        ],
        ComparisonOperator="GreaterThanThreshold", Threshold=0, EvaluationPeriods=1, DatapointsToAlarm=1,
        TreatMissingData="notBreaching",
    ), "Alarm that starts the first worker task when runs wait and none runs"))


# ---- stack --------------------------------------------------------------------------------------

def build(config: EnvironmentConfig) -> Template:
    """The workers stack of one environment (only rendered when `workers.enabled`): SQS run queue and dead-letter
    queue, ECS cluster and Fargate service running the worker entry point, scaled on backlog per task.

    Parameters: ImageTag (root), DataKeyArn, OpsKeyArn (from the security stack), AppSubnetIds,
    WorkerSecurityGroupId (from the network stack), DatabaseEndpoint, DatabasePort, DatabaseName,
    DatabaseSecretArn, ContentBucketName, DataAccessPolicyArn (from the data stack), one secret ARN per application
    secret (from the secrets stack, named by `naming.app_secret_output`). Outputs: RunQueueUrl, RunQueueArn,
    RunQueueName, DeadLetterQueueUrl, DeadLetterQueueArn, DeadLetterQueueName, WorkerClusterName,
    WorkerServiceName, WorkerLogGroupName. Raises: ValueError when `workers.enabled` is false;
    naming.NamingError when a generated AWS name breaks its service's limit.
    """
    if not config.workers.enabled:
        raise ValueError(f"{config.name}: workers.enabled is false; the workers stack is not part of it")
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    add_container_parameters(template, config, WORKER_INPUTS)
    queue, dead = _queues(template, config)
    group = log_group(template, "WorkerLogGroup", description="Logs of the worker containers (KMS, retention)",
                      kms_key_arn=Ref("OpsKeyArn"), retention_days=config.logging.retention_days,
                      retain=config.production)
    task_role = template.add_resource(_task_role(config, queue))
    execution_role = template.add_resource(_execution_role(config, group))
    cluster = _cluster(template, config)
    task = _task_definition(template, config, task_role, execution_role, group)
    service = _service(template, config, cluster, task)
    if config.workers.min_tasks != config.workers.max_tasks:
        _autoscaling(template, config, cluster, service, queue)

    add_output(template, "RunQueueUrl", Ref(queue), "URL of the run queue (the API enqueues run ids)")
    add_output(template, "RunQueueArn", GetAtt(queue, "Arn"), "ARN of the run queue")
    add_output(template, "RunQueueName", GetAtt(queue, "QueueName"), "Name of the run queue (metrics)")
    add_output(template, "DeadLetterQueueName", GetAtt(dead, "QueueName"), "Name of the dead-letter queue")
    add_output(template, "DeadLetterQueueUrl", Ref(dead), "URL of the dead-letter queue")
    add_output(template, "DeadLetterQueueArn", GetAtt(dead, "Arn"), "ARN of the dead-letter queue")
    add_output(template, "WorkerClusterName", Ref(cluster), "ECS cluster of the workers")
    add_output(template, "WorkerServiceName", GetAtt(service, "Name"), "ECS service of the workers")
    add_output(template, "WorkerLogGroupName", Ref(group), "Log group of the worker containers")
    return template


SPEC = StackSpec(name="workers", component=COMPONENT, description=DESCRIPTION, build=build)
