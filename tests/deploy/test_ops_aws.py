"""`adkit logs` and `adkit status` (health) end to end against the local moto server (CloudWatch Logs, ECS,
CloudWatch alarms); App Runner and Amplify, which moto lacks, stubbed at the boto3 boundary (botocore Stubber).
Non-TTY: captured output, as in CI logs and pipes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import botocore.session
import pytest
from botocore.stub import Stubber

from generator.deploy.session import Aws
from generator.ops import health, inventory, logs

pytestmark = pytest.mark.slow

SERVICE_ID = "0123456789abcdef0123456789abcdef"
ALARMS = ("Monitoring-1ABC-Backend5xx-XYZ", "Monitoring-1ABC-DatabaseCpu-QRS")


def _environment_template(app: str) -> dict:
    """A one-level stand-in for a deployed environment: the log groups, an ECS service and alarms."""
    arn = f"arn:aws:apprunner:eu-west-1:123456789012:service/{app}-dev-backend/{SERVICE_ID}"
    return {
        "Parameters": {"ImageTag": {"Type": "String"}},
        "Resources": {
            "WafLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": f"aws-waf-logs-{app}"}},
            "DbLogs": {"Type": "AWS::Logs::LogGroup",
                       "Properties": {"LogGroupName": f"/aws/rds/cluster/{app}-dev/postgresql"}},
            "HelperLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": f"/aws/lambda/{app}-x"}},
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": f"{app}-workers"}},
            "TaskDef": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "Family": f"{app}-worker", "ContainerDefinitions": [{"Name": "w", "Image": "x", "Memory": 512}]}},
            "Worker": {"Type": "AWS::ECS::Service", "Properties": {
                "Cluster": {"Ref": "Cluster"}, "ServiceName": f"{app}-worker", "DesiredCount": 2,
                "TaskDefinition": {"Ref": "TaskDef"}}},
        },
        "Outputs": {"BackendServiceArn": {"Value": arn}, "AmplifyAppId": {"Value": "d1abc"}},
    }


@pytest.fixture
def deployed(kit):
    """The kit's dev stack, created directly (moto), with log events in three groups."""
    body = json.dumps(_environment_template(kit.app))
    kit.cfn.create_stack(StackName=kit.stack_name("dev"), TemplateBody=body,
                         Parameters=[{"ParameterKey": "ImageTag", "ParameterValue": "abc123"}])
    logs_client = kit.session.client("logs")
    app_group = f"/aws/apprunner/{kit.app}-dev-backend/{SERVICE_ID}/application"
    logs_client.create_log_group(logGroupName=app_group)
    now = int(time.time() * 1000)
    for group, stream, messages in ((app_group, "instance/aaa111", ["GET /healthz 200", "ERROR boom"]),
                                    (f"/aws/rds/cluster/{kit.app}-dev/postgresql", "writer", ["checkpoint"]),
                                    (f"aws-waf-logs-{kit.app}", "cloudfront_x", ['{"action":"BLOCK"}'])):
        logs_client.create_log_stream(logGroupName=group, logStreamName=stream)
        logs_client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": now - 60_000 + i * 1000 + len(group), "message": m} for i, m in enumerate(messages)])
    cloudwatch = kit.session.client("cloudwatch")
    for name in ALARMS:   # moto's CloudFormation does not create alarms: named as CloudFormation names them
        cloudwatch.put_metric_alarm(AlarmName=f"{kit.stack_name('dev')}-{name}", Namespace="AWS/AppRunner",
                                    MetricName="5xx", Statistic="Sum", Period=300, EvaluationPeriods=1, Threshold=1,
                                    ComparisonOperator="GreaterThanThreshold")
    cloudwatch.put_metric_alarm(AlarmName="someone-else-alarm", Namespace="N", MetricName="M", Statistic="Sum",
                                Period=300, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    for name in (f"{kit.stack_name('dev')}-{ALARMS[0]}", "someone-else-alarm"):
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="Threshold Crossed: 7 > 1")
    return kit


def test_logs_prints_every_source_newest_last_with_time_and_source(deployed):
    result = deployed.run("logs", "dev", "--since", "1h")

    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert len(lines) == 4, lines
    assert [line.split()[2] for line in lines].count("backend") == 2
    assert {line.split()[2] for line in lines} == {"backend", "database", "waf"}
    stamps = [line[:19] for line in lines]
    assert stamps == sorted(stamps)
    assert any("ERROR boom" in line and "aaa111" in line for line in lines)
    assert "/aws/lambda/" not in result.err       # helper functions' groups are not application logs


def test_logs_component_and_filter_narrow_the_output(deployed):
    result = deployed.run("logs", "dev", "--component", "backend", "--filter", "ERROR")

    assert result.code == 0, result.text
    assert [line.split(None, 3)[3] for line in result.out.splitlines()] == ["aaa111       ERROR boom"]


def test_logs_for_a_component_the_environment_lacks_says_which_exist(deployed):
    result = deployed.run("logs", "dev", "--component", "worker")

    assert result.code == 3
    assert "log sources deployed: backend, database, waf" in result.err
    assert "Traceback" not in result.text


def test_logs_refuses_a_bad_since_in_one_line(deployed):
    result = deployed.run("logs", "dev", "--since", "yesterday")

    assert result.code == 2 and "--since 'yesterday' not understood" in result.err


def test_logs_follow_prints_new_events_and_ends_with_130_on_ctrl_c(deployed, monkeypatch):
    logs_client = deployed.session.client("logs")
    group = f"/aws/rds/cluster/{deployed.app}-dev/postgresql"
    naps = []

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 1:
            logs_client.put_log_events(logGroupName=group, logStreamName="writer", logEvents=[
                {"timestamp": int(time.time() * 1000), "message": "new after follow started"}])
        elif len(naps) >= 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(logs.time, "sleep", nap)
    result = deployed.run("logs", "dev", "--component", "database", "--follow")

    assert result.code == 130, result.text
    lines = result.out.splitlines()
    assert lines[-1].endswith("new after follow started")
    assert sum("new after follow started" in line for line in lines) == 1   # not repeated by later polls
    assert "Traceback" not in result.text


def test_logs_source_discovery_from_the_service_arn():
    assert logs.app_runner_group("arn:aws:apprunner:eu-west-1:123456789012:service/a-dev-backend/ab12") == \
        "/aws/apprunner/a-dev-backend/ab12/application"
    assert logs.app_runner_group("arn:aws:ecs:eu-west-1:123456789012:service/c/s") is None


def test_logs_sources_skip_helper_and_flow_log_groups_and_find_workers_and_an_ecs_backend():
    def group(stack, lid, name):
        return inventory.Resource(stack, lid, "AWS::Logs::LogGroup", name)

    helpers = (group("Backend", "LogRetentionFunctionLogs", "e-Backend-1X-LogRetentionFunctionLogs-2Y"),
               group("Network", "FlowLogGroup", "e-Network-1X-FlowLogGroup-2Y"),
               group("Workers", "WorkerLogs", "e-Workers-1-WorkerLogs-2"))
    arn = "arn:aws:apprunner:eu-west-1:123456789012:service/e-backend/ab12"
    app_runner = inventory.Inventory({"Outputs": [{"OutputKey": "BackendServiceArn", "OutputValue": arn}]}, helpers)
    ecs = inventory.Inventory({}, (*helpers, group("Backend", "ServiceLogs", "/ecs/e-backend")))

    assert [(s.component, s.group) for s in logs.sources(app_runner)] == [
        ("backend", "/aws/apprunner/e-backend/ab12/application"), ("worker", "e-Workers-1-WorkerLogs-2")]
    assert [(s.component, s.group) for s in logs.sources(ecs)] == [
        ("backend", "/ecs/e-backend"), ("worker", "e-Workers-1-WorkerLogs-2")]


def test_since_accepts_durations_and_iso_times():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert logs.since_millis("1h", now) == int(datetime(2026, 1, 1, 11, tzinfo=UTC).timestamp() * 1000)
    assert logs.since_millis("2026-01-01T10:00:00Z", now) == int(datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp()
                                                                  * 1000)


# ---- status: App Runner and Amplify stubbed (moto has neither), the rest real moto ----------------------

class _PartlyStubbedAws(Aws):
    """The real session against moto, except the services moto lacks, which answer from a Stubber."""

    STUBBED = ("apprunner", "amplify")

    def __init__(self, region: str) -> None:
        super().__init__(None, region)
        self.stubbers: dict[str, Stubber] = {}
        session = botocore.session.get_session()
        self._stubbed = {}
        for service in self.STUBBED:
            client = session.create_client(service, region_name=region, endpoint_url="https://stubbed.invalid",
                                           aws_access_key_id="x", aws_secret_access_key="x")
            self.stubbers[service] = Stubber(client)
            self.stubbers[service].activate()
            self._stubbed[service] = client

    def client(self, service: str):
        return self._stubbed.get(service) or super().client(service)


def _stub_backend_and_frontend(aws: _PartlyStubbedAws, app: str, job_status: str = "FAILED") -> None:
    name = f"{app}-dev-backend"
    arn = f"arn:aws:apprunner:eu-west-1:123456789012:service/{name}/{SERVICE_ID}"
    aws.stubbers["apprunner"].add_response("describe_service", {"Service": {
        "ServiceName": name, "ServiceId": SERVICE_ID, "ServiceArn": arn, "ServiceUrl": "x.awsapprunner.com",
        "CreatedAt": datetime(2026, 1, 1, tzinfo=UTC),
        "UpdatedAt": datetime(2026, 1, 1, tzinfo=UTC), "Status": "OPERATION_IN_PROGRESS",
        "SourceConfiguration": {}, "InstanceConfiguration": {}, "AutoScalingConfigurationSummary": {},
        "NetworkConfiguration": {}}}, {"ServiceArn": arn})
    aws.stubbers["amplify"].add_response("list_jobs", {"jobSummaries": [{
        "jobArn": "arn:aws:amplify:eu-west-1:123456789012:apps/d1abc/branches/develop/jobs/0000000007",
        "jobId": "7", "commitId": "0123456789abcdef0123", "commitMessage": "m",
        "commitTime": datetime(2026, 1, 1, tzinfo=UTC), "startTime": datetime(2026, 1, 1, 9, tzinfo=UTC),
        "status": job_status, "jobType": "RELEASE"}]},
        {"appId": "d1abc", "branchName": "develop", "maxResults": 1})


def test_health_reads_image_tag_backend_ecs_amplify_and_alarms(deployed):
    aws = _PartlyStubbedAws("eu-west-1")
    _stub_backend_and_frontend(aws, deployed.app)
    stack = aws.client("cloudformation").describe_stacks(StackName=deployed.stack_name("dev"))["Stacks"][0]

    found = health.collect(aws, inventory.read(aws, stack), {"branch": "develop"})

    assert found["ImageTag"] == "abc123" and found["LastUpdated"]
    app_runner, ecs = found["Backend"]
    assert app_runner == {"platform": "App Runner", "name": f"{deployed.app}-dev-backend",
                          "state": "OPERATION_IN_PROGRESS", "running": None, "url": "x.awsapprunner.com"}
    assert ecs["platform"] == "ECS" and ecs["services"][0]["desired"] == 2
    assert found["Frontend"]["status"] == "FAILED" and found["Frontend"]["commit"] == "0123456789ab"
    assert found["Alarms"]["watched"] == 2
    assert [a["name"] for a in found["Alarms"]["in_alarm"]] == [f"{deployed.stack_name('dev')}-{ALARMS[0]}"]
    text = "\n".join(t for t, _ in health.lines(found))
    assert "image tag: abc123" in text and "OPERATION_IN_PROGRESS" in text and "1 of 2 in ALARM" in text
    assert "last build job 7 (RELEASE" in text and "FAILED" in text
    for stubber in aws.stubbers.values():
        stubber.assert_no_pending_responses()


def test_health_reports_a_refused_probe_instead_of_failing(deployed):
    aws = _PartlyStubbedAws("eu-west-1")
    aws.stubbers["apprunner"].add_client_error("describe_service", "AccessDeniedException", "not allowed")
    aws.stubbers["amplify"].add_client_error("list_jobs", "AccessDeniedException", "not allowed")
    stack = aws.client("cloudformation").describe_stacks(StackName=deployed.stack_name("dev"))["Stacks"][0]

    found = health.collect(aws, inventory.read(aws, stack), {"branch": "develop"})

    assert "AccessDeniedException" in found["Backend"][0]["error"]
    assert "AccessDeniedException" in found["Frontend"]["error"]
    assert "could not read" in "\n".join(t for t, _ in health.lines(found))


def test_status_json_carries_the_health(deployed, monkeypatch):
    """The real command; App Runner and Amplify calls refused by the stubs (moto has neither) are reported."""
    stubbed = _PartlyStubbedAws("eu-west-1")
    _stub_backend_and_frontend(stubbed, deployed.app, job_status="SUCCEED")
    monkeypatch.setattr("generator.deploy.cli.Aws", lambda profile, region: stubbed)

    result = deployed.run("status", "dev", "--json")

    assert result.code == 0, result.text
    data = json.loads(result.out)
    assert data["Health"]["ImageTag"] == "abc123"
    assert data["Health"]["Frontend"]["status"] == "SUCCEED"
    assert data["Health"]["Alarms"]["in_alarm"][0]["reason"] == "Threshold Crossed: 7 > 1"
    assert "1 of 2 in ALARM" in result.err


def test_health_reads_an_ecs_backend_from_the_backend_service_arn_output(deployed):
    """An ECS Express Mode backend (moto has no Express Mode): the root output names the ECS service."""
    aws = Aws(None, "eu-west-1")
    stack = aws.client("cloudformation").describe_stacks(StackName=deployed.stack_name("dev"))["Stacks"][0]
    service = next(r for r in inventory.read(aws, stack).resources if r.resource_type == "AWS::ECS::Service")
    express = inventory.Inventory({"Outputs": [{"OutputKey": "BackendServiceArn", "OutputValue": service.physical_id}]},
                                  ())

    found = health.ecs(aws, express, {})

    assert found == {"platform": "ECS", "services": [
        {"name": f"{deployed.app}-worker", "state": "ACTIVE", "running": 0, "desired": 2}]}
    assert "0/2 tasks running" in "\n".join(t for t, _ in health.lines(
        {"ImageTag": "x", "Backend": [found], "Frontend": None, "Alarms": None}))
