"""Monitoring: the alert topic, one alarm per health signal, the environment dashboard, and cost tracking
(monthly budget, one budget per component, cost anomaly detection), all notifying the same SNS topic.

Created last, so every earlier stack's identifiers arrive as parameters. Metric dimensions that have no
CloudFormation attribute (App Runner ServiceName, WAF WebACL name) come from generator/naming.py.
"""

from __future__ import annotations

import functools
import json

from awacs import sns as awacs_sns
from awacs.aws import (
    Allow,
    ArnLike,
    Condition,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from troposphere import AWSHelperFn, GetAtt, Ref, Select, Split, Sub, Template, budgets, ce, cloudwatch, events, sns

from generator import contract, naming
from generator.backend_metrics import BackendMetrics, Metric
from generator.cfn import add_output, add_parameter, describe, new_template
from generator.components import deny_insecure_transport
from generator.config import APP_RUNNER, ECS_EXPRESS, ConfigError, EnvironmentConfig
from generator.stacks.spec import MonitoringInputs, StackSpec

COMPONENT = "monitoring"
DESCRIPTION = "Alarms, dashboard, alert topic, budget and cost anomaly detection"

RUNBOOK = "docs/runbook.md"
PERIOD = 300  # seconds; a valid CloudWatch alarm period (cfn-lint E3615: 10, 30, 60 or a multiple of 60)
TOPIC = "AlertTopic"
WORKER_TASK_RULE = "WorkerTaskFailedRule"


# ---- small builders -------------------------------------------------------------------------------

def _value(value: str) -> str | AWSHelperFn:
    """A BackendMetrics dimension value for a template property: `${X}` -> Ref, literal -> itself."""
    if value.startswith("${") and value.endswith("}") and value.count("${") == 1:
        return Ref(value[2:-1])
    return Sub(value) if "${" in value else value


def _metric_stat(metric: Metric, statistic: str | None = None) -> cloudwatch.MetricStat:
    return cloudwatch.MetricStat(
        Metric=cloudwatch.Metric(Namespace=metric.namespace, MetricName=metric.name, Dimensions=[
            cloudwatch.MetricDimension(Name=name, Value=_value(value)) for name, value in metric.dimensions]),
        Period=PERIOD, Stat=statistic or metric.statistic)


def _dimensions(**values) -> list[cloudwatch.MetricDimension]:
    return [cloudwatch.MetricDimension(Name=name, Value=value) for name, value in values.items()]


def _metric_properties(metric: Metric) -> dict:
    """The alarm properties Namespace, MetricName and Dimensions of a BackendMetrics metric."""
    return {"Namespace": metric.namespace, "MetricName": metric.name,
            "Dimensions": [cloudwatch.MetricDimension(Name=n, Value=_value(v)) for n, v in metric.dimensions]}


def _alarm(template: Template, logical_id: str, *, summary: str, anchor: str,
           ComparisonOperator: str = "GreaterThanThreshold",  # CloudFormation's property names
           EvaluationPeriods: int = 3,
           DatapointsToAlarm: int | None = None,
           Period: int = PERIOD,
           TreatMissingData: str = "notBreaching",
           **properties) -> cloudwatch.Alarm:
    """An alarm that notifies the topic on ALARM and on OK, enabled, with a runbook pointer.

    Defaults, overridable by passing the CloudFormation property: ComparisonOperator GreaterThanThreshold,
    EvaluationPeriods 3, DatapointsToAlarm = EvaluationPeriods (every evaluated period breaches), Period
    PERIOD (300 seconds; a metric-math alarm, one given `Metrics`, sets its periods per query and gets none),
    TreatMissingData notBreaching (a metric that stops publishing, such as an idle queue or a paused
    database, is OK). `properties` are the remaining AWS::CloudWatch::Alarm properties (metric, Statistic,
    Threshold, ...). Returns the alarm, added to `template`.
    """
    if "Metrics" not in properties:
        properties["Period"] = Period
    alarm = cloudwatch.Alarm(
        logical_id,
        AlarmDescription=f"{summary} Runbook: {RUNBOOK}#{anchor}",
        ActionsEnabled=True,
        AlarmActions=[Ref(TOPIC)],
        OKActions=[Ref(TOPIC)],
        ComparisonOperator=ComparisonOperator,
        EvaluationPeriods=EvaluationPeriods,
        DatapointsToAlarm=EvaluationPeriods if DatapointsToAlarm is None else DatapointsToAlarm,
        TreatMissingData=TreatMissingData,
        **properties,
    )
    describe(alarm, f"Alarm: {summary}")
    return template.add_resource(alarm)


def _ceiling(config: EnvironmentConfig, maximum: float) -> float:
    """alerts.thresholds.capacity_ratio of a configured maximum (instances, tasks, ACU), to 2 decimals."""
    return round(config.alerts.thresholds.capacity_ratio * maximum, 2)


def _near_max_alarm(template: Template, logical_id: str, *, ceiling: float, summary: str, anchor: str,
                    **metric) -> cloudwatch.Alarm:
    """An alarm when the metric's Maximum is at or above `ceiling` in 3 five-minute periods (15 minutes).
    `metric`: Namespace, MetricName and Dimensions. Returns the alarm, added to `template`."""
    return _alarm(template, logical_id, summary=summary, anchor=anchor, **metric, Statistic="Maximum",
                  ComparisonOperator="GreaterThanOrEqualToThreshold", Threshold=ceiling)


def _count_alarm(template: Template, logical_id: str, *, threshold: float, summary: str, anchor: str,
                 **metric) -> cloudwatch.Alarm:
    """An alarm when the metric's Sum over one period (5 minutes unless `metric` sets Period) is at or above
    `threshold`. `metric`: Namespace, MetricName, Dimensions (and Period). Returns the alarm, added to
    `template`."""
    return _alarm(template, logical_id, summary=summary, anchor=anchor, **metric, Statistic="Sum",
                  EvaluationPeriods=1, ComparisonOperator="GreaterThanOrEqualToThreshold", Threshold=threshold)


def _backend_5xx_rate(template: Template, config: EnvironmentConfig, *, errors: list[cloudwatch.MetricDataQuery],
                      errors_sum: str, requests: cloudwatch.MetricStat, origin: str = "") -> None:
    """Backend5xxRate, on either platform: 100 * `errors_sum` (an expression over the `errors` queries' Ids)
    / requests, alarmed above backend_5xx_rate_percent in 2 of 3 five-minute periods; periods with fewer than
    backend_5xx_min_requests requests count as 0 %. `origin` tells in the summary where 5xx responses come from."""
    thresholds = config.alerts.thresholds
    minimum = thresholds.backend_5xx_min_requests
    _alarm(
        template, "Backend5xxRate",
        summary=f"Backend 5xx responses{origin} above {thresholds.backend_5xx_rate_percent:g}% of requests "
                f"(periods with at least {minimum} requests) in 2 of 3 five-minute periods.",
        anchor="backend-5xx-rate",
        Metrics=[
            *errors,
            cloudwatch.MetricDataQuery(Id="requests", MetricStat=requests, ReturnData=False),
            cloudwatch.MetricDataQuery(
                Id="rate", Label="5xx rate (%)", ReturnData=True,
                Expression=f"IF(requests >= {minimum}, 100 * {errors_sum} / requests, 0)"),
        ],
        Threshold=thresholds.backend_5xx_rate_percent,
        EvaluationPeriods=3, DatapointsToAlarm=2,
    )


def _backend_instances_near_max(template: Template, config: EnvironmentConfig, unit: str, **metric) -> None:
    """BackendInstancesNearMax, on either platform: `unit` names what runs ("instances" on App Runner, "tasks"
    on ECS); `metric` is its count metric (Namespace, MetricName, Dimensions)."""
    ratio = config.alerts.thresholds.capacity_ratio
    maximum = config.backend.max_instances
    ceiling = _ceiling(config, maximum)
    _near_max_alarm(
        template, "BackendInstancesNearMax", ceiling=ceiling,
        summary=f"Backend running {ceiling:g} or more {unit} ({ratio:.0%} of max_instances = {maximum}) for 15 "
                "minutes: autoscaling is near its ceiling.",
        anchor="backend-instances-near-max", **metric,
    )


def _topic(template: Template, config: EnvironmentConfig) -> sns.Topic:
    topic = template.add_resource(describe(sns.Topic(
        TOPIC,
        DisplayName=f"{config.app_name} {config.name} alerts",
        KmsMasterKeyId=Ref("OpsKeyArn"),
    ), "SNS topic for every alarm, budget and cost-anomaly alert (encrypted with the operations key)"))
    account = Condition(StringEquals("aws:SourceAccount", Ref("AWS::AccountId")))
    statements = [
        Statement(
            Sid="CloudWatchAlarms",
            Effect=Allow,
            Principal=Principal("Service", "cloudwatch.amazonaws.com"),
            Action=[awacs_sns.Publish],
            Resource=[Ref(topic)],
            Condition=Condition([
                StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
                ArnLike("aws:SourceArn",
                        Sub("arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*")),
            ]),
        ),
        Statement(Sid="Budgets", Effect=Allow, Principal=Principal("Service", "budgets.amazonaws.com"),
                  Action=[awacs_sns.Publish], Resource=[Ref(topic)], Condition=account),
        Statement(Sid="CostAnomalyDetection", Effect=Allow,
                  Principal=Principal("Service", "costalerts.amazonaws.com"),
                  Action=[awacs_sns.Publish], Resource=[Ref(topic)], Condition=account),
        *([Statement(
            Sid="EventBridgeWorkerTaskFailures",
            Effect=Allow,
            Principal=Principal("Service", "events.amazonaws.com"),
            Action=[awacs_sns.Publish],
            Resource=[Ref(topic)],
            Condition=Condition([StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
                                 ArnLike("aws:SourceArn", GetAtt(WORKER_TASK_RULE, "Arn"))]),
        )] if config.workers.enabled else []),
        deny_insecure_transport([awacs_sns.Publish, awacs_sns.Subscribe], [Ref(topic)]),
    ]
    template.add_resource(describe(sns.TopicPolicy(
        "AlertTopicPolicy",
        Topics=[Ref(topic)],
        PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=statements),
    ), "Lets CloudWatch alarms, AWS Budgets and Cost Anomaly Detection of this account publish alerts"))
    for index, email in enumerate(config.alerts.emails):
        template.add_resource(describe(sns.SubscriptionResource(
            f"AlertEmail{index}", TopicArn=Ref(topic), Protocol="email", Endpoint=email,
        ), f"E-mail subscription of {email} to the alert topic (confirm the e-mail AWS sends)"))
    return topic


# ---- alarms -------------------------------------------------------------------------------------

def _app_runner_alarms(template: Template, config: EnvironmentConfig) -> None:
    thresholds = config.alerts.thresholds
    service = _dimensions(ServiceName=Ref("ServiceName"), ServiceID=Ref("ServiceId"))

    def stat(metric: str, statistic: str = "Sum") -> cloudwatch.MetricStat:
        return cloudwatch.MetricStat(
            Metric=cloudwatch.Metric(Namespace="AWS/AppRunner", MetricName=metric, Dimensions=service),
            Period=PERIOD, Stat=statistic)

    _backend_5xx_rate(
        template, config, errors_sum="FILL(errors, 0)", requests=stat("Requests"),
        errors=[cloudwatch.MetricDataQuery(Id="errors", MetricStat=stat("5xxStatusResponses"), ReturnData=False)])
    # The service's own metric (EMF in its logs), non-streaming requests only: App Runner's RequestLatency
    # includes SSE responses that stay open ~sse_max_stream_seconds by design (dashboard: "stream duration").
    _alarm(
        template, "BackendLatencyP99",
        summary=f"Backend p99 latency of non-streaming requests above {thresholds.backend_p99_latency_ms} ms for "
                "15 minutes.",
        anchor="backend-latency",
        Namespace=contract.METRICS_NAMESPACE, MetricName=contract.LATENCY_METRIC,
        Dimensions=_dimensions(**{contract.METRICS_DIMENSION: config.name}),
        ExtendedStatistic="p99", Threshold=thresholds.backend_p99_latency_ms,
    )
    _backend_instances_near_max(template, config, "instances",
                                Namespace="AWS/AppRunner", MetricName="ActiveInstances", Dimensions=service)


# Backend alarms per platform: each reads only metrics its platform publishes.
def _app_runner_backend_alarms(template: Template, config: EnvironmentConfig, source: BackendMetrics) -> None:
    _app_runner_alarms(template, config)  # App Runner's alarms read AWS/AppRunner as they always did


def _express_alarms(template: Template, config: EnvironmentConfig, source: BackendMetrics) -> None:
    """ECS Express Mode: 5xx rate and p99 latency at the load balancer, tasks running vs desired, tasks near
    max_instances, task CPU and memory near their size. Every metric comes from `source`."""
    thresholds = config.alerts.thresholds
    errors = [cloudwatch.MetricDataQuery(Id=f"errors{i}", MetricStat=_metric_stat(m), ReturnData=False)
              for i, m in enumerate(source.errors_5xx)]
    total = " + ".join(f"FILL(errors{i}, 0)" for i in range(len(errors)))
    _backend_5xx_rate(template, config, errors=errors, errors_sum=f"({total})",
                      requests=_metric_stat(source.requests), origin=" (from the tasks or the load balancer)")
    _alarm(
        template, "BackendLatencyP99",
        summary=f"Backend p99 time to response headers above {thresholds.backend_p99_latency_ms} ms for 15 "
                "minutes (an SSE stream counts until its headers, so streams do not inflate it).",
        anchor="backend-latency",
        **_metric_properties(source.latency),
        ExtendedStatistic=source.latency.statistic,
        Threshold=round(thresholds.backend_p99_latency_ms * source.latency_per_ms, 3),
    )
    if source.desired is not None:
        _alarm(
            template, "BackendTasksBelowDesired",
            summary="Backend running fewer tasks than the scaler wants for 15 minutes (tasks failing to start: "
                    "image, secrets, health check or capacity).",
            anchor="backend-tasks-below-desired",
            Metrics=[
                cloudwatch.MetricDataQuery(Id="running", MetricStat=_metric_stat(source.instances, "Minimum"),
                                           ReturnData=False),
                cloudwatch.MetricDataQuery(Id="desired", MetricStat=_metric_stat(source.desired), ReturnData=False),
                cloudwatch.MetricDataQuery(Id="missing", Label="desired - running tasks", ReturnData=True,
                                           Expression="desired - running"),
            ],
            ComparisonOperator="GreaterThanOrEqualToThreshold", Threshold=1,
        )
    _backend_instances_near_max(template, config, "tasks", **_metric_properties(source.instances))
    percent = round(thresholds.capacity_ratio * 100, 1)
    for logical_id, metric, what in (("BackendCpuNearMax", source.cpu, "CPU"),
                                     ("BackendMemoryNearMax", source.memory, "memory")):
        _alarm(
            template, logical_id,
            summary=f"Backend task {what} above {percent:g}% of the task size on average for 15 minutes.",
            anchor="backend-cpu-memory-near-max",
            **_metric_properties(metric),
            Statistic="Average", Threshold=percent,
        )


BACKEND_ALARMS = {APP_RUNNER: _app_runner_backend_alarms, ECS_EXPRESS: _express_alarms}


def _database_alarms(template: Template, config: EnvironmentConfig) -> None:
    thresholds = config.alerts.thresholds
    database = config.database
    cluster = _dimensions(DBClusterIdentifier=Ref("ClusterIdentifier"))
    # Role=WRITER/READER follows the role across a failover; an instance identifier would not.
    writer = _dimensions(DBClusterIdentifier=Ref("ClusterIdentifier"), Role="WRITER")
    paused = " Missing data (auto-paused at 0 ACU) counts as OK." if database.min_acu == 0 else ""
    ceiling = _ceiling(config, database.max_acu)
    _near_max_alarm(
        template, "DatabaseCapacityNearMax", ceiling=ceiling,
        summary=f"Aurora capacity at or above {ceiling:g} ACU ({thresholds.capacity_ratio:.0%} of max_acu = "
                f"{database.max_acu:g}) for 15 minutes.{paused}",
        anchor="database-capacity-near-max",
        Namespace="AWS/RDS", MetricName="ServerlessDatabaseCapacity", Dimensions=cluster,
    )
    _alarm(
        template, "DatabaseCpu",
        summary=f"Aurora writer CPU above {thresholds.database_cpu_percent:g}% for 15 minutes.{paused}",
        anchor="database-cpu",
        Namespace="AWS/RDS", MetricName="CPUUtilization", Dimensions=writer,
        Statistic="Average", Threshold=thresholds.database_cpu_percent,
    )
    _alarm(
        template, "DatabaseConnections",
        summary=f"Aurora writer above {thresholds.database_connections} connections for 10 minutes.{paused}",
        anchor="database-connections",
        Namespace="AWS/RDS", MetricName="DatabaseConnections", Dimensions=writer,
        Statistic="Maximum", EvaluationPeriods=2, Threshold=thresholds.database_connections,
    )
    if database.reader:
        _alarm(
            template, "DatabaseReplicaLag",
            summary=f"Aurora reader replica lag above {thresholds.replica_lag_ms} ms for 5 minutes.",
            anchor="database-replica-lag",
            Namespace="AWS/RDS", MetricName="AuroraReplicaLag",
            Dimensions=_dimensions(DBClusterIdentifier=Ref("ClusterIdentifier"), Role="READER"),
            Statistic="Maximum", Period=60, EvaluationPeriods=5, Threshold=thresholds.replica_lag_ms,
        )


def _edge_alarms(template: Template, config: EnvironmentConfig, inputs: MonitoringInputs) -> None:
    """Frontend (Amplify), NAT gateways, WAF and AWS Backup."""
    thresholds = config.alerts.thresholds
    _count_alarm(
        template, "Frontend5xx", threshold=thresholds.frontend_5xx_count,
        summary=f"Amplify frontend returned {thresholds.frontend_5xx_count} or more 5xx responses in 5 minutes.",
        anchor="frontend-5xx",
        Namespace="AWS/AmplifyHosting", MetricName="5xxErrors", Dimensions=_dimensions(App=Ref("AppId")),
    )
    for index in range(inputs.nat_count):
        _count_alarm(
            template, f"NatPortAllocationErrors{index}", threshold=thresholds.nat_port_allocation_errors,
            summary=f"NAT gateway {index + 1} of {inputs.nat_count} could not allocate source ports "
                    f"({thresholds.nat_port_allocation_errors} or more errors in 5 minutes): outbound "
                    "connections (Gemini API) are failing.",
            anchor="nat-port-allocation-errors",
            Namespace="AWS/NATGateway", MetricName="ErrorPortAllocation",
            Dimensions=_dimensions(NatGatewayId=Select(index, Split(",", Ref("NatGatewayIds")))),
        )
    _count_alarm(
        template, "WafBlockedSpike", threshold=thresholds.waf_blocked_requests,
        summary=f"WAF blocked {thresholds.waf_blocked_requests} or more backend requests in 5 minutes "
                "(attack, scraping, or a false positive locking users out).",
        anchor="waf-blocked-spike",
        Namespace="AWS/WAFV2", MetricName="BlockedRequests",
        Dimensions=_dimensions(WebACL=naming.web_acl_name(config), Region=Ref("AWS::Region"), Rule="ALL"),
    )
    _count_alarm(
        template, "BackupJobsFailed", threshold=1,
        summary="An AWS Backup job of this environment's vault failed in the last hour.",
        anchor="backup-job-failed",
        Namespace="AWS/Backup", MetricName="NumberOfBackupJobsFailed",
        Dimensions=_dimensions(BackupVaultName=Ref("BackupVaultName")), Period=3600,
    )


def _worker_alarms(template: Template, config: EnvironmentConfig) -> None:
    """Run queue and worker service. Every metric here is published without Container Insights: SQS queue
    metrics (AWS/SQS, one-minute) and ECS task state changes (EventBridge). RunningTaskCount is a Container
    Insights metric, so "fewer tasks than desired" is not alarmed on; a task that stops with a non-zero exit
    code (crash, out of memory, SIGKILL after the stop timeout) or never starts is."""
    thresholds = config.alerts.thresholds
    dead = _dimensions(QueueName=Ref("DeadLetterQueueName"))
    _alarm(
        template, "WorkerDeadLetters",
        summary="A run reached the workers' dead-letter queue: it failed "
                f"{config.workers.max_receive_count} times and will not be retried.",
        anchor="worker-dead-letters",
        Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible", Dimensions=dead,
        Statistic="Maximum", EvaluationPeriods=1, Threshold=0,
        # TreatMissingData notBreaching (default): an empty, untouched queue stops publishing after six hours
    )
    age = thresholds.worker_queue_age_seconds
    _alarm(
        template, "WorkerQueueAge",
        summary=f"The oldest run in the workers' queue has waited more than {age} seconds: workers are not "
                "keeping up, not starting, or not deleting finished runs.",
        anchor="worker-queue-age",
        Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=_dimensions(QueueName=Ref("RunQueueName")),
        Statistic="Maximum", EvaluationPeriods=1, Threshold=age,
    )


def _worker_task_failures(template: Template, config: EnvironmentConfig) -> events.Rule:
    """EventBridge rule: a worker task stopped with a non-zero exit code, or failed to start -> alert topic."""
    return template.add_resource(describe(events.Rule(
        WORKER_TASK_RULE,
        Description="Worker task stopped with a non-zero exit code or failed to start "
                    f"(runbook: {RUNBOOK}#worker-task-failed)",
        State="ENABLED",
        EventPattern={
            "source": ["aws.ecs"],
            "detail-type": ["ECS Task State Change"],
            "detail": {
                "clusterArn": [Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:cluster/"
                                   "${WorkerClusterName}")],
                "group": [Sub("service:${WorkerServiceName}")],
                "lastStatus": ["STOPPED"],
                "$or": [
                    {"containers": {"exitCode": [{"anything-but": 0}]}},
                    {"stopCode": ["TaskFailedToStart"]},
                ],
            },
        },
        Targets=[events.Target(
            Id="alert-topic",
            Arn=Ref(TOPIC),
            InputTransformer=events.InputTransformer(
                InputPathsMap={"task": "$.detail.taskArn", "reason": "$.detail.stoppedReason",
                               "code": "$.detail.stopCode"},
                InputTemplate=f'"{config.app_name} {config.name}: worker task <task> stopped (<code>): <reason>. '
                              f'Runbook: {RUNBOOK}#worker-task-failed"',
            ),
        )],
    ), "Forwards failed worker tasks (non-zero exit, failed start) to the alert topic"))


# ---- dashboard ----------------------------------------------------------------------------------

def _widget(title: str, metrics: list, *, x: int, y: int, width: int = 8, height: int = 6,
            stat: str = "Sum", period: int = PERIOD, **extra) -> dict:
    properties = {"title": title, "metrics": metrics, "view": "timeSeries", "stacked": False,
                  "region": "${AWS::Region}", "stat": stat, "period": period, **extra}
    return {"type": "metric", "x": x, "y": y, "width": width, "height": height, "properties": properties}


def _backend_widgets(source: BackendMetrics, environment: str) -> list[dict]:
    """Requests and responses, latency, instances/tasks with CPU and memory, from the platform's metrics; the
    latency widget also shows the service's own metric of non-streaming requests (what App Runner's latency
    alarm watches), on the left axis in ms."""
    latency_unit = "ms" if source.latency_per_ms == 1 else "s"
    counts = [source.instances.dashboard(stat="Maximum", label="running")]
    if source.desired is not None:
        counts.append(source.desired.dashboard(stat="Minimum", label="desired"))
    return [
        _widget(f"Backend requests and 5xx ({source.title})", [
            source.requests.dashboard(label="requests"),
            *[m.dashboard(label=m.name) for m in source.errors_5xx]], x=0, y=6),
        _widget(f"Backend latency: non-streaming requests (ms), {source.title} incl. streams ({latency_unit})", [
            [contract.METRICS_NAMESPACE, contract.LATENCY_METRIC, contract.METRICS_DIMENSION, environment,
             {"stat": "p50", "label": "requests p50"}],
            [contract.METRICS_NAMESPACE, contract.LATENCY_METRIC, contract.METRICS_DIMENSION, environment,
             {"stat": "p99", "label": "requests p99"}],
            source.latency.dashboard(stat="p50", label=f"{source.title} p50", yAxis="right"),
            source.latency.dashboard(stat="p99", label=f"{source.title} p99 (stream duration)", yAxis="right")],
            x=8, y=6, stat="p99"),
        _widget("Backend instances, CPU and memory", [
            *counts,
            source.cpu.dashboard(stat="Average", yAxis="right"),
            source.memory.dashboard(stat="Average", yAxis="right")], x=16, y=6, stat="Average"),
    ]


def _dashboard_body(config: EnvironmentConfig, inputs: MonitoringInputs, alarms: list[str]) -> tuple[str, dict]:
    """DashboardBody as a `Sub` string (deterministic JSON) and its variable map."""
    source = inputs.backend_metrics
    cluster = ["DBClusterIdentifier", "${ClusterIdentifier}"]
    # By role, not instance id: after a failover the reader is the writer and the labels stay true.
    roles = ["WRITER", "READER"] if config.database.reader else ["WRITER"]
    amplify = ["App", "${AppId}"]
    nats = [f"${{Nat{i}}}" for i in range(inputs.nat_count)]
    acl = ["WebACL", naming.web_acl_name(config), "Region", "${AWS::Region}", "Rule", "ALL"]
    vault = ["BackupVaultName", "${BackupVaultName}"]

    widgets = [
        {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {"markdown": (
            f"# {config.app_name} {config.name}\n"
            f"Backend ({source.title}), database (Aurora), frontend (Amplify), network (NAT), WAF and backups. "
            f"Every alarm notifies the alert topic; runbook: `{RUNBOOK}`.")}},
        {"type": "alarm", "x": 0, "y": 2, "width": 24, "height": 4,
         "properties": {"title": "Alarm status", "alarms": alarms, "sortBy": "stateUpdatedTimestamp"}},
        # Backend (the platform's own metrics)
        *_backend_widgets(source, config.name),
        # Database
        _widget("Database capacity (ACU)", [
            ["AWS/RDS", "ServerlessDatabaseCapacity", *cluster, {"stat": "Maximum"}],
            ["AWS/RDS", "ACUUtilization", *cluster, {"stat": "Maximum", "yAxis": "right"}]], x=0, y=12,
            stat="Maximum", annotations={"horizontal": [{"label": "max_acu", "value": config.database.max_acu}]}),
        _widget("Database CPU (%) and connections by role", [
            *[["AWS/RDS", "CPUUtilization", *cluster, "Role", role, {"label": f"CPU {role.lower()}"}]
              for role in roles],
            *[["AWS/RDS", "DatabaseConnections", *cluster, "Role", role,
               {"label": f"connections {role.lower()}", "yAxis": "right", "stat": "Maximum"}] for role in roles],
        ], x=8, y=12, stat="Average"),
        _widget("Database replica lag, memory and storage", [
            *([["AWS/RDS", "AuroraReplicaLag", *cluster, "Role", "READER", {"stat": "Maximum"}]]
              if config.database.reader else []),
            ["AWS/RDS", "FreeableMemory", *cluster, {"stat": "Minimum", "yAxis": "right"}],
            ["AWS/RDS", "VolumeBytesUsed", *cluster, {"stat": "Maximum", "yAxis": "right"}]], x=16, y=12,
            stat="Maximum"),
        # Frontend
        _widget("Frontend requests and errors", [
            ["AWS/AmplifyHosting", "Requests", *amplify], ["AWS/AmplifyHosting", "4xxErrors", *amplify],
            ["AWS/AmplifyHosting", "5xxErrors", *amplify]], x=0, y=18),
        _widget("Frontend latency (s, time to first byte)", [
            ["AWS/AmplifyHosting", "Latency", *amplify, {"stat": "Average", "label": "average"}],
            ["AWS/AmplifyHosting", "Latency", *amplify, {"stat": "p90", "label": "p90"}]], x=8, y=18,
            stat="Average"),
        # Network
        _widget("NAT gateways: bytes and errors", [
            *[["AWS/NATGateway", "BytesOutToDestination", "NatGatewayId", nat, {"label": f"bytes out NAT {i + 1}"}]
              for i, nat in enumerate(nats)],
            *[["AWS/NATGateway", "ErrorPortAllocation", "NatGatewayId", nat,
               {"label": f"port errors NAT {i + 1}", "yAxis": "right"}] for i, nat in enumerate(nats)],
            *[["AWS/NATGateway", "PacketsDropCount", "NatGatewayId", nat,
               {"label": f"dropped packets NAT {i + 1}", "yAxis": "right"}] for i, nat in enumerate(nats)],
        ], x=16, y=18),
        # WAF and backups
        _widget("WAF: allowed and blocked requests", [
            ["AWS/WAFV2", "AllowedRequests", *acl], ["AWS/WAFV2", "BlockedRequests", *acl]], x=0, y=24,
            width=12),
        _widget("AWS Backup jobs", [
            ["AWS/Backup", "NumberOfBackupJobsCompleted", *vault],
            ["AWS/Backup", "NumberOfBackupJobsFailed", *vault]], x=12, y=24, width=12, period=3600),
    ]
    if config.workers.enabled:
        runs = ["QueueName", "${RunQueueName}"]
        dead = ["QueueName", "${DeadLetterQueueName}"]
        svc_dims = ["ClusterName", "${WorkerClusterName}", "ServiceName", "${WorkerServiceName}"]
        widgets += [
            _widget("Worker queue: runs waiting, in flight, dead-lettered", [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", *runs, {"label": "waiting"}],
                ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", *runs, {"label": "in flight"}],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", *dead, {"label": "dead-lettered"}]],
                x=0, y=30, stat="Maximum"),
            _widget("Worker queue: age of the oldest run (s)", [
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", *runs]], x=8, y=30, stat="Maximum",
                annotations={"horizontal": [{"label": "alarm",
                                             "value": config.alerts.thresholds.worker_queue_age_seconds}]}),
            _widget("Worker tasks: CPU and memory (%)" + (
                ", running tasks" if config.workers.container_insights != "disabled" else ""), [
                ["AWS/ECS", "CPUUtilization", *svc_dims, {"stat": "Average"}],
                ["AWS/ECS", "MemoryUtilization", *svc_dims, {"stat": "Average"}],
                *([["ECS/ContainerInsights", "RunningTaskCount", *svc_dims, {"stat": "Maximum", "yAxis": "right"}]]
                  if config.workers.container_insights != "disabled" else [])], x=16, y=30, stat="Average"),
        ]
    body = json.dumps({"widgets": widgets}, sort_keys=True, separators=(",", ":"))
    variables = {f"Nat{i}": Select(i, Split(",", Ref("NatGatewayIds"))) for i in range(inputs.nat_count)}
    return body, variables


# ---- cost tracking ------------------------------------------------------------------------------

def _tag_filter(key: str, value: str) -> budgets.Expression:
    return budgets.Expression(Tags=budgets.TagValues(Key=key, Values=[value]))


def _notifications(config: EnvironmentConfig, *, forecast: bool) -> list[budgets.NotificationWithSubscribers]:
    subscriber = [budgets.Subscriber(SubscriptionType="SNS", Address=Ref(TOPIC))]
    kinds = [("ACTUAL", config.budget.actual_threshold_percent)]
    if forecast:
        kinds.append(("FORECASTED", config.budget.forecast_threshold_percent))
    return [budgets.NotificationWithSubscribers(
        Notification=budgets.Notification(NotificationType=kind, ComparisonOperator="GREATER_THAN",
                                          Threshold=threshold, ThresholdType="PERCENTAGE"),
        Subscribers=subscriber) for kind, threshold in kinds]


def budget_physical_name(config: EnvironmentConfig, base: str, *, forecast: bool) -> str:
    """`base` plus the notification thresholds, e.g. `<app>-<env>-monthly-a80-f100`.

    NotificationsWithSubscribers is create-only: a threshold change replaces the budget, and CloudFormation
    creates the replacement before it deletes the old one, which AWS Budgets refuses for a name that still
    exists (the update would fail and roll back). Naming the thresholds gives the replacement a new name.
    """
    suffix = f"a{config.budget.actual_threshold_percent:g}"
    if forecast:
        suffix += f"-f{config.budget.forecast_threshold_percent:g}"
    return naming.checked("budget", f"{base}-{suffix}")


def _resource_tags(config: EnvironmentConfig, cls):
    return [cls(Key=key, Value=value) for key, value in naming.environment_tags(config, COMPONENT).items()]


def _budget(template: Template, config: EnvironmentConfig, logical_id: str, *, name: str, limit: float,
            filters: list[budgets.Expression], forecast: bool, description: str) -> budgets.Budget:
    return template.add_resource(describe(budgets.Budget(
        logical_id,
        Budget=budgets.BudgetData(
            BudgetName=budget_physical_name(config, name, forecast=forecast),
            BudgetType="COST",
            TimeUnit="MONTHLY",
            BudgetLimit=budgets.Spend(Amount=limit, Unit="USD"),
            FilterExpression=budgets.Expression(And=filters),
        ),
        NotificationsWithSubscribers=_notifications(config, forecast=forecast),
        ResourceTags=_resource_tags(config, budgets.ResourceTag),
    ), description))


def _cost_tracking(template: Template, config: EnvironmentConfig, inputs: MonitoringInputs) -> None:
    """Monthly budget of the environment, one budget per component, and cost anomaly detection.

    Budgets filter on the cost-allocation tags (Application, Environment, Component), which an
    administrator must activate once (docs/cost.md). A budget per component is used instead of an
    AWS::CE::CostCategory because cost categories can only be created in an organization's
    management account, and workload accounts usually are member accounts.
    """
    known = list(inputs.components)
    unknown = sorted(set(config.budget.component_limits_usd) - set(known))
    if unknown:
        raise ConfigError(f"budget.component_limits_usd: unknown component(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(known)}")
    scope = [_tag_filter(naming.TAG_APPLICATION, config.app_name), _tag_filter(naming.TAG_ENVIRONMENT, config.name)]
    _budget(template, config, "MonthlyBudget", name=naming.budget_name(config), limit=config.budget.monthly_usd,
            filters=scope, forecast=True,
            description=f"Monthly cost budget of the {config.name} environment (actual and forecast alerts)")
    for component in known:
        limit = config.budget.component_limits_usd.get(component, config.budget.monthly_usd)
        logical_id = "ComponentBudget" + "".join(part.capitalize() for part in component.replace("-", "_").split("_"))
        _budget(template, config, logical_id, name=naming.component_budget_name(config, component), limit=limit,
                filters=[*scope, _tag_filter(naming.TAG_COMPONENT, component)], forecast=False,
                description=f"Monthly cost of the {component} component of {config.name}")

    # A CUSTOM monitor per environment: AWS allows only one DIMENSIONAL (SERVICE) monitor per account,
    # which two environments in one account cannot both create.
    monitor = template.add_resource(describe(ce.AnomalyMonitor(
        "CostAnomalyMonitor",
        MonitorName=naming.anomaly_monitor_name(config),
        MonitorType="CUSTOM",
        MonitorSpecification=json.dumps(
            {"Tags": {"Key": naming.TAG_ENVIRONMENT, "Values": [config.name]}},
            sort_keys=True),
        ResourceTags=_resource_tags(config, ce.ResourceTag),
    ), f"Cost Anomaly Detection monitor over costs tagged {naming.TAG_ENVIRONMENT}={config.name}"))
    threshold = config.budget.anomaly_threshold_usd
    template.add_resource(describe(ce.AnomalySubscription(
        "CostAnomalySubscription",
        SubscriptionName=naming.anomaly_subscription_name(config),
        MonitorArnList=[Ref(monitor)],
        Frequency="IMMEDIATE",
        Subscribers=[ce.Subscriber(Type="SNS", Address=Ref(TOPIC))],
        ThresholdExpression=json.dumps({"Dimensions": {
            "Key": "ANOMALY_TOTAL_IMPACT_ABSOLUTE", "MatchOptions": ["GREATER_THAN_OR_EQUAL"],
            "Values": [f"{threshold:g}"]}}, sort_keys=True),
        ResourceTags=_resource_tags(config, ce.ResourceTag),
    ), f"Sends cost anomalies of {config.name} with a total impact >= {threshold:g} USD to the alert topic"))


# ---- stack --------------------------------------------------------------------------------------

def build(config: EnvironmentConfig, inputs: MonitoringInputs) -> Template:
    """Monitoring stack of one environment.

    Parameters: OpsKeyArn, the backend outputs its platform's metrics need (`inputs.backend_metrics.parameters`:
    ServiceId and ServiceName on App Runner, LoadBalancerFullName on ECS Express), ClusterIdentifier, AppId,
    NatGatewayIds, BackupVaultName, and with workers RunQueueName, DeadLetterQueueName, WorkerClusterName,
    WorkerServiceName (wired by name from the earlier stacks). Outputs: AlertTopicArn, DashboardUrl. Raises:
    ConfigError when budget.component_limits_usd names a component the environment does not deploy.
    """
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    add_parameter(template, "OpsKeyArn", "KMS key for operations data (encrypts the alert topic)")
    for name, description in inputs.backend_metrics.parameters.items():
        add_parameter(template, name, description)
    add_parameter(template, "ClusterIdentifier", "Aurora cluster identifier")
    add_parameter(template, "AppId", "Amplify app id (metric dimension App)")
    add_parameter(template, "NatGatewayIds", f"Comma-separated NAT gateway ids ({inputs.nat_count})")
    add_parameter(template, "BackupVaultName", "AWS Backup vault of this environment")
    if config.workers.enabled:
        add_parameter(template, "RunQueueName", "Workers' run queue (metric dimension QueueName)")
        add_parameter(template, "DeadLetterQueueName", "Workers' dead-letter queue")
        add_parameter(template, "WorkerClusterName", "ECS cluster of the workers")
        add_parameter(template, "WorkerServiceName", "ECS service of the workers")

    _topic(template, config)
    BACKEND_ALARMS[inputs.backend_platform](template, config, inputs.backend_metrics)
    _database_alarms(template, config)
    _edge_alarms(template, config, inputs)
    if config.workers.enabled:
        _worker_alarms(template, config)
        _worker_task_failures(template, config)
    alarms = sorted(name for name, resource in template.resources.items() if isinstance(resource, cloudwatch.Alarm))

    body, variables = _dashboard_body(config, inputs, [f"${{{name}.Arn}}" for name in alarms])
    dashboard = template.add_resource(describe(cloudwatch.Dashboard(
        "Dashboard",
        DashboardName=naming.dashboard_name(config),
        DashboardBody=Sub(body, **variables) if variables else Sub(body),
    ), f"CloudWatch dashboard: health of every component of {config.name} and the alarm status"))

    _cost_tracking(template, config, inputs)

    add_output(template, "AlertTopicArn", Ref(TOPIC), "SNS topic that receives every alarm and cost alert")
    add_output(template, "DashboardUrl", Sub(
        "https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}"
        "#dashboards:name=${Name}", Name=Ref(dashboard)), "CloudWatch dashboard of this environment")
    return template


def spec(inputs: MonitoringInputs) -> StackSpec:
    """The monitoring stack, told by the composer what the environment deploys."""
    return StackSpec(name="monitoring", component=COMPONENT, description=DESCRIPTION,
                     build=functools.partial(build, inputs=inputs))
