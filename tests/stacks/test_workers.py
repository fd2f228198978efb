"""Invariants of the worker tier (issue 13): run queue + dead-letter queue, ECS Fargate worker service, its
roles, security group, autoscaling, log group, alarms, and how the other stacks change with it.

Property tests run over every environment in config/ that has workers enabled, and over configurations built
here with workers on and off (no sample-specific values).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from cfn_helpers import ENVIRONMENTS, as_list, one, props, require, resources_of, statements

from generator import compose, contract, deploy_permissions
from generator.cfn import to_data
from generator.config import FARGATE_SIZES, ConfigError, EnvironmentConfig, load_environment, parse_environment
from generator.stacks import workers
from generator.stacks._backend import secret_variables

REPO = Path(__file__).resolve().parents[2]
RUNBOOK_ANCHORS = {re.sub(r"[^a-z0-9]+", "-", line.lstrip("#").strip().lower()).strip("-")
                   for line in (REPO / "docs" / "runbook.md").read_text().splitlines() if line.startswith("## ")}

BASE = {
    "name": "qa",
    "app_name": "acme-video",
    "budget": {"monthly_usd": 100},
    "frontend": {"repository": "https://github.com/acme/web", "branch": "main"},
}
BUILT = {
    "scale-to-zero": {},
    "warm-spot": {"workers": {"min_tasks": 1, "max_tasks": 3, "spot": True, "cpu": 1024, "memory": 3072}},
    "fixed-no-insights": {"workers": {"min_tasks": 2, "max_tasks": 2, "container_insights": "disabled",
                                      "max_receive_count": 3, "stop_timeout_seconds": 120}},
    "production": {"production": True, "workers": {
        "min_tasks": 0, "max_tasks": 10, "cpu": 2048, "memory": 8192, "container_insights": "enhanced",
        "visibility_timeout_seconds": 900}},
}


def configured(changes: dict) -> EnvironmentConfig:
    data = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        data[key] = value
    return parse_environment(data, "qa.toml")


@functools.cache
def environment(key: str) -> tuple[EnvironmentConfig, dict[str, dict]]:
    """(config, {stack name: template data}) for a config/ environment name or a BUILT key."""
    config = load_environment(key) if key in ENVIRONMENTS else configured(BUILT[key])
    children = compose.build_children(config)
    stacks = {child.spec.name: to_data(child.template) for child in children}
    stacks["root"] = to_data(compose.build_root(config, children))
    return config, stacks


WITH_WORKERS = [env for env in ENVIRONMENTS if load_environment(env).workers.enabled] + list(BUILT)


def test_worker_property_tests_cover_at_least_one_environment():
    assert WITH_WORKERS, "no configuration with workers to test"


def tmpl(key: str, name: str = "workers") -> dict:
    return environment(key)[1][name]


def cfg(key: str) -> EnvironmentConfig:
    return environment(key)[0]


def ref(name: str) -> dict:
    return {"Ref": name}


def arn_of(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def group_id(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "GroupId"]}


# ---- queues ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_queue_is_encrypted_with_the_data_key_and_redrives_to_the_dead_letter_queue(key):
    resources = tmpl(key)["Resources"]
    queue, dead = props(resources["RunQueue"]), props(resources["DeadLetterQueue"])
    assert queue["KmsMasterKeyId"] == ref("DataKeyArn") and dead["KmsMasterKeyId"] == ref("DataKeyArn")
    assert "SqsManagedSseEnabled" not in queue and "SqsManagedSseEnabled" not in dead
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": arn_of("DeadLetterQueue"),
                                      "maxReceiveCount": cfg(key).workers.max_receive_count}
    assert queue["VisibilityTimeout"] == cfg(key).workers.visibility_timeout_seconds
    # a standard queue keeps the original enqueue time in the DLQ: the DLQ must keep messages longer
    assert dead["MessageRetentionPeriod"] == 14 * 24 * 3600 > queue["MessageRetentionPeriod"]
    for logical_id in ("RunQueue", "DeadLetterQueue"):
        policy = ("RetainExceptOnCreate", "Retain") if cfg(key).production else ("Delete", "Delete")
        assert (resources[logical_id]["DeletionPolicy"], resources[logical_id]["UpdateReplacePolicy"]) == policy


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_queues_accept_tls_requests_only(key):
    policies = require(tmpl(key), "AWS::SQS::QueuePolicy").values()
    covered = set()
    for policy in policies:
        (deny,) = statements(props(policy)["PolicyDocument"])
        assert deny["Effect"] == "Deny" and deny["Principal"] in ({"AWS": "*"}, "*")
        assert deny["Condition"]["Bool"]["aws:SecureTransport"] in (False, "false")
        assert as_list(deny["Action"]) == ["sqs:*"]
        covered |= {q["Ref"] for q in props(policy)["Queues"]}
    assert covered == {"RunQueue", "DeadLetterQueue"}


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_queue_key_lets_sqs_use_it_and_the_api_may_send_and_the_worker_receive(key):
    (key_policy,) = [props(k)["KeyPolicy"] for lid, k in resources_of(tmpl(key, "security"), "AWS::KMS::Key").items()
                     if lid == "DataKey"]
    via = [s["Condition"]["StringEquals"]["kms:ViaService"] for s in statements(key_policy)
           if s["Sid"].startswith("UseOnlyThrough")]
    assert {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"} in via[0]
    # the role the API runs as (App Runner instance role or ECS task role) may send, and only that role
    backend = tmpl(key, "backend")
    senders = {lid: [s for p in props(r).get("Policies", []) for s in statements(p["PolicyDocument"])
                     if s["Sid"] == "EnqueueRuns"] for lid, r in resources_of(backend, "AWS::IAM::Role").items()}
    (sender,) = [lid for lid, found in senders.items() if found]
    sent = [s for p in props(backend["Resources"][sender])["Policies"] for s in statements(p["PolicyDocument"])]
    assert {"sqs:SendMessage"} == {a for s in sent if s["Sid"] == "EnqueueRuns" for a in as_list(s["Action"])}
    assert [s["Resource"] for s in sent if s["Sid"] == "EnqueueRuns"] == [[ref("RunQueueArn")]]
    (encrypt,) = [s for s in sent if s["Sid"] == "EncryptRunMessages"]
    assert set(encrypt["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}   # a sender needs both
    # the API's container gets RUN_QUEUE_URL = the workers stack's output, whatever the platform
    assert {"Name": contract.RUN_QUEUE_URL, "Value": ref("RunQueueUrl")} in list(_dicts(backend))


def _dicts(value):
    """Every mapping nested anywhere in a template (to find a Name/Value pair on any platform)."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item)


# ---- network ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_security_group_has_no_ingress_and_egress_only_https_and_postgres_to_the_database(key):
    net = tmpl(key, "network")
    group = props(net["Resources"]["WorkerSecurityGroup"])
    assert "SecurityGroupIngress" not in group
    assert not [r for r in resources_of(net, "AWS::EC2::SecurityGroupIngress").values()
                if props(r)["GroupId"] == group_id("WorkerSecurityGroup")]
    inline = [(e["IpProtocol"], e["FromPort"], e["ToPort"], e["CidrIp"]) for e in group["SecurityGroupEgress"]]
    separate = [(p["IpProtocol"], p["FromPort"], p["ToPort"], p["DestinationSecurityGroupId"])
                for p in map(props, resources_of(net, "AWS::EC2::SecurityGroupEgress").values())
                if p["GroupId"] == group_id("WorkerSecurityGroup")]
    assert inline == [("tcp", 443, 443, "0.0.0.0/0")]
    assert separate == [("tcp", 5432, 5432, group_id("DatabaseSecurityGroup"))]


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_database_accepts_postgres_only_from_the_connector_and_worker_groups(key):
    net = tmpl(key, "network")
    rules = sorted((p["GroupId"]["Fn::GetAtt"][0], p["IpProtocol"], p["FromPort"], p["ToPort"],
                    p["SourceSecurityGroupId"]["Fn::GetAtt"][0])
                   for p in map(props, resources_of(net, "AWS::EC2::SecurityGroupIngress").values()))
    assert rules == [("DatabaseSecurityGroup", "tcp", 5432, 5432, "ConnectorSecurityGroup"),
                     ("DatabaseSecurityGroup", "tcp", 5432, 5432, "WorkerSecurityGroup")]


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_service_runs_in_the_private_app_subnets_without_public_ip(key):
    (_, service) = one(tmpl(key), "AWS::ECS::Service")
    network = props(service)["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network == {"AssignPublicIp": "DISABLED", "Subnets": ref("AppSubnetIds"),
                       "SecurityGroups": [ref("WorkerSecurityGroupId")]}
    assert tmpl(key, "root")["Resources"]["Workers"]["Properties"]["Parameters"]["WorkerSecurityGroupId"] == {
        "Fn::GetAtt": ["Network", "Outputs.WorkerSecurityGroupId"]}
    deployment = props(service)["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    provider = "FARGATE_SPOT" if cfg(key).workers.spot else "FARGATE"
    assert props(service)["CapacityProviderStrategy"] == [{"CapacityProvider": provider, "Weight": 1}]
    assert "LaunchType" not in props(service)


# ---- task definition --------------------------------------------------------------------------

@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_task_runs_the_backend_image_with_the_worker_command_read_only_and_not_as_root(key):
    config = cfg(key)
    (_, task) = one(tmpl(key), "AWS::ECS::TaskDefinition")
    task = props(task)
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert task["Memory"] in FARGATE_SIZES[task["Cpu"]]
    assert (int(task["Cpu"]), int(task["Memory"])) == (config.workers.cpu, config.workers.memory)
    assert task["RuntimePlatform"] == {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"}
    (container,) = task["ContainerDefinitions"]
    # the image's own ENTRYPOINT (apprunner/Dockerfile), then the worker command
    (entry,) = re.findall(r"^ENTRYPOINT (\[.*\])$", (REPO / "apprunner" / "Dockerfile").read_text(), re.M)
    assert container["EntryPoint"] == json.loads(entry)
    assert container["Command"] == list(contract.WORKER_COMMAND)
    assert f"/{config.app_name}/backend:${{ImageTag}}" in container["Image"]["Fn::Sub"]
    assert container["ReadonlyRootFilesystem"] is True
    assert container["User"] and not re.match(r"^(0|root)(:|$)", container["User"])
    assert container["StopTimeout"] == config.workers.stop_timeout_seconds <= 120
    assert tuple(e["Name"] for e in container["Environment"]) == (contract.WORKER_VARIABLES
                                                                  + tuple(config.backend.environment))
    assert {s["Name"]: s["ValueFrom"] for s in container["Secrets"]} == {
        name: ref(parameter) for name, parameter in secret_variables(config).items()}
    assert not {e["Name"] for e in container["Environment"]} & set(secret_variables(config))
    logging = container["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs" and logging["Options"]["awslogs-group"] == ref("WorkerLogGroup")


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_log_group_has_retention_and_the_ops_key(key):
    group = props(tmpl(key)["Resources"]["WorkerLogGroup"])
    assert group["KmsKeyId"] == ref("OpsKeyArn")
    assert group["RetentionInDays"] == cfg(key).logging.retention_days


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_cluster_container_insights_follow_config(key):
    (_, cluster) = one(tmpl(key), "AWS::ECS::Cluster")
    assert props(cluster)["ClusterSettings"] == [{"Name": "containerInsights",
                                                  "Value": cfg(key).workers.container_insights}]
    assert set(props(cluster)["CapacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}


# ---- roles --------------------------------------------------------------------------------------

# Actions that IAM cannot scope to a resource, and so may use Resource "*".
UNSCOPED = {"ecr:GetAuthorizationToken"}


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_roles_have_no_wildcard_actions_and_scoped_resources(key):
    roles = require(tmpl(key), "AWS::IAM::Role")
    assert set(roles) == {"TaskRole", "ExecutionRole"}
    for role in roles.values():
        trust = statements(props(role)["AssumeRolePolicyDocument"])
        assert [s["Principal"] for s in trust] == [{"Service": "ecs-tasks.amazonaws.com"}]
        assert [s["Condition"] for s in trust] == [{"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}}]
        for policy in props(role)["Policies"]:
            for statement in statements(policy["PolicyDocument"]):
                if statement["Effect"] == "Deny":
                    continue
                actions = as_list(statement["Action"])
                assert not [a for a in actions if "*" in a], statement
                if "*" in as_list(statement["Resource"]):
                    assert set(actions) <= UNSCOPED, statement


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_task_role_consumes_only_the_run_queue_and_reads_only_declared_secrets(key):
    role = props(tmpl(key)["Resources"]["TaskRole"])
    assert role["ManagedPolicyArns"] == [ref("DataAccessPolicyArn")]
    found = {s["Sid"]: s for p in role["Policies"] for s in statements(p["PolicyDocument"])}
    assert set(found["ConsumeRunQueue"]["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                       "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
    assert found["ConsumeRunQueue"]["Resource"] == [arn_of("RunQueue")]
    assert as_list(found["DecryptRunMessages"]["Action"]) == ["kms:Decrypt"]   # a receiver needs Decrypt only
    assert found["DecryptRunMessages"]["Condition"] == {"StringEquals": {
        "kms:ViaService": {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}}}
    assert found["ReadDeclaredSecrets"]["Resource"] == [ref(p) for p in secret_variables(cfg(key)).values()]
    sent = [a for s in found.values() for a in as_list(s["Action"]) if a == "sqs:SendMessage"]
    assert not sent


@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_execution_role_pulls_one_repository_and_writes_one_log_group(key):
    role = props(tmpl(key)["Resources"]["ExecutionRole"])
    found = {s["Sid"]: s for p in role["Policies"] for s in statements(p["PolicyDocument"])}
    (repository,) = found["PullBackendImage"]["Resource"]
    assert repository["Fn::Sub"].endswith(f":repository/{cfg(key).app_name}/backend")
    assert found["WriteWorkerLogs"]["Resource"] == [arn_of("WorkerLogGroup")]
    assert found["InjectDeclaredSecrets"]["Resource"] == [ref(p) for p in secret_variables(cfg(key)).values()]


# ---- autoscaling -------------------------------------------------------------------------------

@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_autoscaling_bounds_and_backlog_per_task_come_from_config(key):
    config = cfg(key).workers
    targets = resources_of(tmpl(key), "AWS::ApplicationAutoScaling::ScalableTarget")
    if config.min_tasks == config.max_tasks:
        assert not targets and not resources_of(tmpl(key), "AWS::ApplicationAutoScaling::ScalingPolicy")
        assert props(one(tmpl(key), "AWS::ECS::Service")[1])["DesiredCount"] == config.min_tasks
        return
    (_, target) = one(tmpl(key), "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (props(target)["MinCapacity"], props(target)["MaxCapacity"]) == (config.min_tasks, config.max_tasks)
    assert props(target)["ScalableDimension"] == "ecs:service:DesiredCount"
    policies = {props(p)["PolicyType"]: props(p) for p in
                require(tmpl(key), "AWS::ApplicationAutoScaling::ScalingPolicy").values()}
    tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == config.target_backlog_per_task
    queries = {q["Id"]: q for q in tracking["CustomizedMetricSpecification"]["Metrics"]}
    assert queries["tasks"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    assert queries["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    (returned,) = [q for q in queries.values() if q.get("ReturnData")]
    # never divides by zero running tasks
    assert returned["Expression"].startswith("IF(FILL(tasks, 0) > 0,") and "/ tasks" in returned["Expression"]
    # target tracking cannot scale out from 0 tasks: a step policy does, exactly when 0 is allowed
    assert ("StepScaling" in policies) == (config.min_tasks == 0)
    if config.min_tasks == 0:
        (_, alarm) = one(tmpl(key), "AWS::CloudWatch::Alarm")
        assert props(alarm)["AlarmActions"] == [ref("ScaleFromZero")]
        step = policies["StepScaling"]["StepScalingPolicyConfiguration"]
        assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]


# ---- monitoring -------------------------------------------------------------------------------

@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_alarms_are_present_and_notify_the_alert_topic_with_a_runbook_entry(key):
    monitoring = tmpl(key, "monitoring")
    alarms = resources_of(monitoring, "AWS::CloudWatch::Alarm")
    dead = props(alarms["WorkerDeadLetters"])
    assert dead["Dimensions"] == [{"Name": "QueueName", "Value": ref("DeadLetterQueueName")}]
    assert (dead["ComparisonOperator"], dead["Threshold"]) == ("GreaterThanThreshold", 0)
    age = props(alarms["WorkerQueueAge"])
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert age["Threshold"] == cfg(key).alerts.thresholds.worker_queue_age_seconds
    for alarm in (dead, age):
        assert alarm["AlarmActions"] == [ref("AlertTopic")] and alarm["ActionsEnabled"] is True
    (_, rule) = one(monitoring, "AWS::Events::Rule")
    assert [t["Arn"] for t in props(rule)["Targets"]] == [ref("AlertTopic")]
    assert props(rule)["EventPattern"]["detail"]["lastStatus"] == ["STOPPED"]
    topic_policy = props(one(monitoring, "AWS::SNS::TopicPolicy")[1])["PolicyDocument"]
    assert [s for s in statements(topic_policy) if s["Principal"] == {"Service": "events.amazonaws.com"}]
    described = [props(a)["AlarmDescription"] for a in alarms.values()] + [props(rule)["Description"]]
    anchors = {m for text in described for m in re.findall(r"runbook\.md#([a-z0-9-]+)", text)}
    assert {"worker-dead-letters", "worker-queue-age", "worker-task-failed"} <= anchors <= RUNBOOK_ANCHORS
    (_, dashboard) = one(monitoring, "AWS::CloudWatch::Dashboard")
    body = props(dashboard)["DashboardBody"]["Fn::Sub"]
    body = body[0] if isinstance(body, list) else body
    titles = [w["properties"].get("title", "") for w in json.loads(body)["widgets"]]
    assert len([t for t in titles if t.startswith("Worker")]) == 3
    assert all(needle in body for needle in ("${RunQueueName}", "${DeadLetterQueueName}", "${WorkerServiceName}"))
    params = tmpl(key, "root")["Resources"]["Monitoring"]["Properties"]["Parameters"]
    assert params["DeadLetterQueueName"] == {"Fn::GetAtt": ["Workers", "Outputs.DeadLetterQueueName"]}


# ---- wiring -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", WITH_WORKERS)
def test_worker_stack_is_wired_before_the_backend_that_enqueues_into_it(key):
    order = [lid for lid, r in tmpl(key, "root")["Resources"].items() if r["Type"] == "AWS::CloudFormation::Stack"]
    names = [spec.name for spec in compose.children(cfg(key))]
    assert names.index("workers") < names.index("backend") and "Workers" in order
    outputs = tmpl(key, "root")["Outputs"]
    assert outputs["WorkerServiceName"]["Value"] == {"Fn::GetAtt": ["Workers", "Outputs.WorkerServiceName"]}
    assert outputs["WorkerClusterName"]["Value"] == {"Fn::GetAtt": ["Workers", "Outputs.WorkerClusterName"]}


def test_without_workers_no_worker_resource_is_rendered_anywhere():
    config = configured({"workers": {"enabled": False}})
    children = {child.spec.name: to_data(child.template) for child in compose.build_children(config)}
    assert "workers" not in children
    assert "WorkerSecurityGroup" not in children["network"]["Resources"]
    assert "RunQueueUrl" not in children["backend"]["Parameters"]
    text = json.dumps(children)
    assert "sqs" not in text.lower().replace("sqs.amazonaws", "")   # no queue, no SQS permission, no key use
    assert "Worker" not in json.dumps(children["monitoring"])
    assert "WorkerServiceName" not in to_data(compose.build_root(config, compose.build_children(config)))["Outputs"]
    with pytest.raises(ValueError, match=r"workers\.enabled is false"):
        workers.build(config)


def test_worker_deploy_role_may_create_every_worker_resource_type():
    config = configured({})
    types = deploy_permissions.resource_types([to_data(workers.build(config))])
    assert {"AWS::SQS::Queue", "AWS::ECS::Service", "AWS::ECS::TaskDefinition", "AWS::ECS::Cluster",
            "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy"} <= set(types)
    needed = set(deploy_permissions.deploy_actions(types))
    assert {"ecs:CreateService", "ecs:RegisterTaskDefinition", "sqs:CreateQueue",
            "application-autoscaling:RegisterScalableTarget", "iam:PassRole"} <= needed


# ---- config -----------------------------------------------------------------------------------

def refused(workers_changes: dict, **top) -> str:
    with pytest.raises(ConfigError) as error:
        configured({"workers": workers_changes, **top})
    message = str(error.value)
    assert message.startswith("qa.toml: invalid configuration")
    return message


@pytest.mark.parametrize(("changes", "expected"), [
    ({"cpu": 256, "memory": 4096},
     ["workers.memory", "not valid with cpu 256", "Fargate allows", "256: 512, 1024, 2048"]),
    ({"cpu": 300}, ["workers.cpu"]),
    ({"stop_timeout_seconds": 121}, ["workers.stop_timeout_seconds", "120"]),
    ({"min_tasks": 3, "max_tasks": 2}, ["workers.max_tasks", "must be >= min_tasks (3)"]),
    ({"min_tasks": -1}, ["workers.min_tasks"]),
    ({"max_receive_count": 0}, ["workers.max_receive_count"]),
    ({"visibility_timeout_seconds": 43201}, ["workers.visibility_timeout_seconds"]),
    ({"container_insights": "disabled"}, ["workers.container_insights", "RunningTaskCount"]),
    ({"container_insights": "on"}, ["workers.container_insights", "'enabled', 'enhanced' or 'disabled'"]),
    ({"concurrency": 2}, ["workers.concurrency", "unknown key"]),
])
def test_bad_worker_settings_are_refused_naming_field_and_allowed(changes, expected):
    message = refused(changes)
    for part in expected:
        assert part in message, message


def test_worker_spot_is_refused_in_production_and_allowed_elsewhere():
    assert "workers.spot must be false when production = true" in refused({"spot": True}, production=True)
    assert configured({"workers": {"spot": True}}).workers.spot is True


@pytest.mark.parametrize("cpu", sorted(FARGATE_SIZES))
def test_every_valid_fargate_worker_size_is_accepted(cpu):
    for memory in FARGATE_SIZES[cpu]:
        assert configured({"workers": {"cpu": int(cpu), "memory": int(memory)}}).workers.memory == int(memory)
