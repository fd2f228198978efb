"""Invariants of the monitoring stack, of every log group the kit creates, and of the resilience defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fixture_config
import pytest
from cfn_helpers import (
    CASE_CONFIGS,
    CASES,
    ENVIRONMENTS,
    all_templates,
    case_stack,
    one,
    props,
    require,
    resources_of,
    stack,
)

from generator import compose, contract, naming
from generator.cfn import to_data
from generator.config import APP_RUNNER, ECS_EXPRESS, ConfigError, load_environment

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
TOPIC = {"Ref": "AlertTopic"}

# signal -> (namespace, metric name) of the alarm that must watch it, per backend platform
BACKEND_SIGNALS = {
    APP_RUNNER: {
        "backend 5xx rate": ("AWS/AppRunner", "5xxStatusResponses"),
        # the service's own metric of non-streaming requests (RequestLatency includes ~100 s SSE streams)
        "backend p99 latency": (contract.METRICS_NAMESPACE, contract.LATENCY_METRIC),
        "backend instances near max": ("AWS/AppRunner", "ActiveInstances"),
    },
    ECS_EXPRESS: {  # the managed ALB, ECS, and Container Insights (enabled on the backend's cluster)
        "backend 5xx rate": ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
        "load balancer 5xx": ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"),
        "backend p99 latency": ("AWS/ApplicationELB", "TargetResponseTime"),
        "backend tasks running": ("ECS/ContainerInsights", "RunningTaskCount"),
        "backend tasks desired": ("ECS/ContainerInsights", "DesiredTaskCount"),
        "backend cpu near max": ("AWS/ECS", "CPUUtilization"),
        "backend memory near max": ("AWS/ECS", "MemoryUtilization"),
    },
}
# namespaces each platform publishes backend metrics in; a backend alarm may read no other
BACKEND_NAMESPACES = {APP_RUNNER: {"AWS/AppRunner", contract.METRICS_NAMESPACE},
                      ECS_EXPRESS: {"AWS/ApplicationELB", "AWS/ECS", "ECS/ContainerInsights"}}
SIGNALS = {
    "aurora capacity near max": ("AWS/RDS", "ServerlessDatabaseCapacity"),
    "aurora cpu": ("AWS/RDS", "CPUUtilization"),
    "aurora connections": ("AWS/RDS", "DatabaseConnections"),
    "amplify 5xx": ("AWS/AmplifyHosting", "5xxErrors"),
    "nat port allocation errors": ("AWS/NATGateway", "ErrorPortAllocation"),
    "waf blocked spike": ("AWS/WAFV2", "BlockedRequests"),
}


def alarms(env: str) -> dict[str, dict]:
    return require(case_stack(env, "monitoring"), "AWS::CloudWatch::Alarm")


def watched(alarm: dict) -> set[tuple[str, str]]:
    """(namespace, metric) pairs an alarm reads, directly or through metric math."""
    p = props(alarm)
    if "MetricName" in p:
        return {(p["Namespace"], p["MetricName"])}
    return {(q["MetricStat"]["Metric"]["Namespace"], q["MetricStat"]["Metric"]["MetricName"])
            for q in p["Metrics"] if "MetricStat" in q}


def dimension(alarm: dict, name: str):
    p = props(alarm)
    dims = p.get("Dimensions") or next(
        q["MetricStat"]["Metric"]["Dimensions"] for q in p["Metrics"] if "MetricStat" in q)
    return next(d["Value"] for d in dims if d["Name"] == name)


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


# ---- log groups (every rendered template) -------------------------------------------------------

def test_every_log_group_has_a_kms_key_and_at_least_30_days_retention():
    groups = {f"{path}:{lid}": props(res) for path, tmpl in all_templates().items()
              for lid, res in resources_of(tmpl, "AWS::Logs::LogGroup").items()}
    assert groups, "expected log groups in the rendered templates"
    assert [name for name, p in groups.items() if "KmsKeyId" not in p] == []
    assert [name for name, p in groups.items() if not isinstance(p.get("RetentionInDays"), int)
            or p["RetentionInDays"] < 30] == []


# ---- alert topic and alarms ---------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_alert_topic_is_encrypted_with_the_ops_key_and_only_aws_services_of_this_account_publish(env):
    tmpl = stack(env, "monitoring")
    assert props(tmpl["Resources"]["AlertTopic"])["KmsMasterKeyId"] == {"Ref": "OpsKeyArn"}
    _, policy = one(tmpl, "AWS::SNS::TopicPolicy")
    allows = [s for s in props(policy)["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert {s["Principal"]["Service"] for s in allows} == {
        "cloudwatch.amazonaws.com", "budgets.amazonaws.com", "costalerts.amazonaws.com",
        *(["events.amazonaws.com"] if load_environment(env).workers.enabled else [])}
    assert all(s["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"} for s in allows)
    assert all(s["Action"] == ["sns:Publish"] for s in allows)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_alert_emails_from_config_are_subscribed(env):
    subscriptions = resources_of(stack(env, "monitoring"), "AWS::SNS::Subscription").values()
    assert sorted(props(s)["Endpoint"] for s in subscriptions) == sorted(load_environment(env).alerts.emails)


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_an_alarm_watches_each_listed_signal(env, signal):
    assert any(SIGNALS[signal] in watched(a) for a in alarms(env).values()), signal


@pytest.mark.parametrize("env", CASES)
def test_an_alarm_watches_each_backend_signal_of_the_platform(env):
    for signal, metric in BACKEND_SIGNALS[CASE_CONFIGS[env].backend.platform].items():
        assert any(metric in watched(a) for a in alarms(env).values()), signal


@pytest.mark.parametrize("env", CASES)
def test_no_backend_alarm_reads_a_metric_the_platform_does_not_publish(env):
    platform = CASE_CONFIGS[env].backend.platform
    others = set().union(*BACKEND_NAMESPACES.values()) - BACKEND_NAMESPACES[platform]
    backend = [lid for lid in alarms(env) if lid.startswith("Backend")]
    assert backend
    for lid in backend:
        assert {namespace for namespace, _ in watched(alarms(env)[lid])} <= BACKEND_NAMESPACES[platform], lid
    for lid, alarm in alarms(env).items():
        assert not {namespace for namespace, _ in watched(alarm)} & others, lid
    parameters = set(case_stack(env, "monitoring")["Parameters"])
    assert set(compose.backend_module(CASE_CONFIGS[env]).metrics(CASE_CONFIGS[env]).parameters) <= parameters
    assert parameters <= set(case_stack(env, "root")["Resources"]["Monitoring"]["Properties"]["Parameters"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_replica_lag_alarm_exists_exactly_when_there_is_a_reader(env):
    lag = [a for a in alarms(env).values() if ("AWS/RDS", "AuroraReplicaLag") in watched(a)]
    assert len(lag) == (1 if load_environment(env).database.reader else 0)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_alarm_notifies_the_topic_on_alarm_and_ok_with_explicit_missing_data(env):
    for lid, alarm in alarms(env).items():
        p = props(alarm)
        assert p["AlarmActions"] == [TOPIC] and p["OKActions"] == [TOPIC], lid
        assert p["ActionsEnabled"] is True, lid
        assert p["TreatMissingData"] in {"notBreaching", "breaching", "ignore", "missing"}, lid


@pytest.mark.parametrize("env", CASES)
def test_every_alarm_points_to_an_existing_runbook_section(env):
    anchors = {slug(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for lid, alarm in alarms(env).items():
        match = re.search(r"docs/runbook\.md#([a-z0-9-]+)", props(alarm)["AlarmDescription"])
        assert match and match[1] in anchors, lid


@pytest.mark.parametrize("env", CASES)
def test_thresholds_come_from_config(env):
    config = CASE_CONFIGS[env]
    t = config.alerts.thresholds
    by_metric = {next(iter(watched(a))): props(a) for a in alarms(env).values() if len(watched(a)) == 1}
    signals = BACKEND_SIGNALS[config.backend.platform]
    instances = {APP_RUNNER: "backend instances near max", ECS_EXPRESS: "backend tasks running"}
    assert by_metric[signals[instances[config.backend.platform]]]["Threshold"] == pytest.approx(
        t.capacity_ratio * config.backend.max_instances)
    assert by_metric[("AWS/RDS", "ServerlessDatabaseCapacity")]["Threshold"] == pytest.approx(
        t.capacity_ratio * config.database.max_acu)
    latency = by_metric[signals["backend p99 latency"]]
    assert latency["ExtendedStatistic"] == "p99"
    # App Runner reports milliseconds, the ALB seconds
    per_ms = 1 if config.backend.platform == APP_RUNNER else 0.001
    assert latency["Threshold"] == pytest.approx(t.backend_p99_latency_ms * per_ms)
    assert by_metric[("AWS/WAFV2", "BlockedRequests")]["Threshold"] == t.waf_blocked_requests
    if config.backend.platform == ECS_EXPRESS:
        for signal in ("backend cpu near max", "backend memory near max"):
            assert by_metric[signals[signal]]["Threshold"] == pytest.approx(t.capacity_ratio * 100), signal


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backend_5xx_alarm_is_a_rate_over_requests(env):
    alarm = props(alarms(env)["Backend5xxRate"])
    returned = [q for q in alarm["Metrics"] if q.get("ReturnData")]
    assert len(returned) == 1 and "100 * " in returned[0]["Expression"] and "/ requests" in returned[0]["Expression"]
    assert alarm["Threshold"] == load_environment(env).alerts.thresholds.backend_5xx_rate_percent


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_paused_database_counts_as_ok(env):
    capacity = props(alarms(env)["DatabaseCapacityNearMax"])
    assert capacity["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("env", CASES)
def test_metric_dimensions_match_the_other_stacks(env):
    config = CASE_CONFIGS[env]
    found = alarms(env)
    if config.backend.platform == APP_RUNNER:
        assert dimension(found["Backend5xxRate"], "ServiceName") == {"Ref": "ServiceName"}
        assert dimension(found["Backend5xxRate"], "ServiceID") == {"Ref": "ServiceId"}
    else:
        assert dimension(found["Backend5xxRate"], "LoadBalancer") == {"Ref": "LoadBalancerFullName"}
        for lid in ("BackendInstancesNearMax", "BackendCpuNearMax", "BackendMemoryNearMax"):
            assert dimension(found[lid], "ClusterName") == naming.ecs_backend_cluster_name(config), lid
            assert dimension(found[lid], "ServiceName") == {"Ref": "ServiceName"}, lid
        wired = case_stack(env, "root")["Resources"]["Monitoring"]["Properties"]["Parameters"]
        assert wired["LoadBalancerFullName"] == {"Fn::GetAtt": ["Backend", "Outputs.LoadBalancerFullName"]}
        # the name ECS generated, from the service ARN arn:...:service/<cluster>/<name>
        assert wired["ServiceName"] == {"Fn::GetAtt": ["Backend", "Outputs.ServiceName"]}
        name = case_stack(env, "backend")["Outputs"]["ServiceName"]["Value"]
        assert name == {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "ExpressService"}]}]}
        output = case_stack(env, "backend")["Outputs"]["LoadBalancerFullName"]["Value"]
        assert output == {"Fn::Select": [1, {"Fn::Split": [":loadbalancer/", {"Fn::GetAtt": [
            "ExpressService", "ECSManagedResourceArns.IngressPath.LoadBalancerArn"]}]}]}
    assert dimension(found["WafBlockedSpike"], "WebACL") == naming.web_acl_name(config)
    assert dimension(found["WafBlockedSpike"], "Rule") == "ALL"
    assert dimension(found["Frontend5xx"], "App") == {"Ref": "AppId"}
    assert dimension(found["DatabaseCpu"], "Role") == "WRITER"
    nats = [a for a in found.values() if ("AWS/NATGateway", "ErrorPortAllocation") in watched(a)]
    assert len(nats) == config.network.nat_gateway_count
    assert sorted(dimension(a, "NatGatewayId")["Fn::Select"][0] for a in nats) == list(range(len(nats)))


# ---- dashboard ----------------------------------------------------------------------------------

def build_monitoring(config):
    """The monitoring stack as the composer builds it for this config."""
    spec = next(s for s in compose.children(config) if s.name == "monitoring")
    return spec.build(config)


@pytest.mark.parametrize("env", CASES)
def test_dashboard_shows_every_component_and_every_alarm(env):
    config = CASE_CONFIGS[env]
    _, dashboard = one(case_stack(env, "monitoring"), "AWS::CloudWatch::Dashboard")
    assert props(dashboard)["DashboardName"] == naming.dashboard_name(config)
    body, variables = props(dashboard)["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body)["widgets"]
    # the worker tier's widgets read ECS/ContainerInsights whatever the backend platform (tests/stacks/test_workers.py)
    text = json.dumps([w for w in widgets if not w.get("properties", {}).get("title", "").startswith("Worker")])
    backend = {APP_RUNNER: ("AWS/AppRunner", "${ServiceName}", "${ServiceId}"),
               ECS_EXPRESS: ("AWS/ApplicationELB", "${LoadBalancerFullName}", "ECS/ContainerInsights", "AWS/ECS",
                             "${ServiceName}")}[config.backend.platform]
    others = {"AWS/AppRunner", "AWS/ApplicationELB", "ECS/ContainerInsights"} - set(backend)
    assert not [namespace for namespace in others if namespace in text]
    for needle in (*backend,                                                                  # backend
                   "AWS/RDS", "${ClusterIdentifier}",                                         # database
                   "AWS/AmplifyHosting", "${AppId}",                                          # frontend
                   "AWS/NATGateway", "AWS/WAFV2", naming.web_acl_name(config),                # network, WAF
                   "AWS/Backup", "${BackupVaultName}"):                                       # backups
        assert needle in text, needle
    assert sorted(variables) == [f"Nat{i}" for i in range(config.network.nat_gateway_count)]
    assert all(f"${{Nat{i}}}" in text for i in range(config.network.nat_gateway_count))
    status = next(w for w in widgets if w["type"] == "alarm")
    assert sorted(status["properties"]["alarms"]) == sorted(f"${{{lid}.Arn}}" for lid in alarms(env))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_dashboard_url_output_names_the_dashboard(env):
    url = stack(env, "monitoring")["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"][0]
    assert url.startswith("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}")
    assert url.endswith("#dashboards:name=${Name}")


# ---- cost tracking ------------------------------------------------------------------------------

def tag_filters(budget: dict) -> dict[str, list[str]]:
    return {e["Tags"]["Key"]: e["Tags"]["Values"] for e in props(budget)["Budget"]["FilterExpression"]["And"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_monthly_budget_for_the_environment_with_actual_and_forecast_alerts(env):
    config = load_environment(env)
    budgets = resources_of(stack(env, "monitoring"), "AWS::Budgets::Budget")
    main = [b for b in budgets.values() if naming.TAG_COMPONENT not in tag_filters(b)]
    assert len(main) == 1
    data = props(main[0])["Budget"]
    assert (data["BudgetType"], data["TimeUnit"], data["BudgetLimit"]) == (
        "COST", "MONTHLY", {"Amount": config.budget.monthly_usd, "Unit": "USD"})
    thresholds = f"a{config.budget.actual_threshold_percent:g}-f{config.budget.forecast_threshold_percent:g}"
    assert data["BudgetName"] == f"{naming.budget_name(config)}-{thresholds}"   # the rule, stated independently
    assert tag_filters(main[0]) == {naming.TAG_APPLICATION: [config.app_name], naming.TAG_ENVIRONMENT: [env]}
    notes = {n["Notification"]["NotificationType"]: n for n in props(main[0])["NotificationsWithSubscribers"]}
    assert notes["ACTUAL"]["Notification"]["Threshold"] == config.budget.actual_threshold_percent
    assert notes["FORECASTED"]["Notification"]["Threshold"] == config.budget.forecast_threshold_percent
    assert all(n["Subscribers"] == [{"Address": TOPIC, "SubscriptionType": "SNS"}] for n in notes.values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_a_budget_tracks_each_component_of_the_environment(env):
    budgets = resources_of(stack(env, "monitoring"), "AWS::Budgets::Budget").values()
    per_component = {tag_filters(b)[naming.TAG_COMPONENT][0]: b for b in budgets
                     if naming.TAG_COMPONENT in tag_filters(b)}
    assert sorted(per_component) == sorted({spec.component for spec in compose.children(load_environment(env))})
    assert all(tag_filters(b)[naming.TAG_ENVIRONMENT] == [env] for b in per_component.values())
    assert all(props(b)["NotificationsWithSubscribers"] for b in per_component.values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cost_anomaly_monitor_is_custom_per_environment_and_alerts_the_topic(env):
    tmpl = stack(env, "monitoring")
    _, monitor = one(tmpl, "AWS::CE::AnomalyMonitor")
    assert props(monitor)["MonitorType"] == "CUSTOM" and "MonitorDimension" not in props(monitor)
    assert json.loads(props(monitor)["MonitorSpecification"]) == {
        "Tags": {"Key": naming.TAG_ENVIRONMENT, "Values": [env]}}
    _, subscription = one(tmpl, "AWS::CE::AnomalySubscription")
    assert props(subscription)["Subscribers"] == [{"Address": TOPIC, "Type": "SNS"}]
    assert props(subscription)["MonitorArnList"] == [{"Ref": "CostAnomalyMonitor"}]


def test_budget_names_change_with_their_create_only_notifications():
    """A threshold change replaces a budget; the replacement is created first, so it needs a new name."""
    config = fixture_config.environment("dev")

    def names(cfg) -> set[str]:
        return {props(b)["Budget"]["BudgetName"]
                for b in resources_of(to_data(build_monitoring(cfg)), "AWS::Budgets::Budget").values()}

    before = names(config)
    for field in ("actual_threshold_percent", "forecast_threshold_percent"):
        value = getattr(config.budget, field) + 5
        changed = config.model_copy(update={"budget": config.budget.model_copy(update={field: value})})
        after = names(changed)
        assert after != before, field
    monthly = naming.budget_name(config)
    assert f"{monthly}-a{config.budget.actual_threshold_percent:g}-f{config.budget.forecast_threshold_percent:g}" \
        in before


def test_unknown_component_limit_is_a_config_error():
    config = fixture_config.environment("dev")
    bad = config.model_copy(update={"budget": config.budget.model_copy(update={"component_limits_usd": {"cache": 5}})})
    with pytest.raises(ConfigError, match=r"component_limits_usd.*cache"):
        build_monitoring(bad)


# ---- backups and resilience defaults (issue 4, item 3) -------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backup_plan_runs_daily(env):
    _, plan = one(stack(env, "data"), "AWS::Backup::BackupPlan")
    rules = props(plan)["BackupPlan"]["BackupPlanRule"]
    assert rules, "backup plan without rules"
    for rule in rules:
        fields = re.fullmatch(r"cron\((.*)\)", rule["ScheduleExpression"])[1].split()
        minute, hour, day, month, weekday, year = fields
        assert minute.isdigit() and hour.isdigit(), rule["ScheduleExpression"]   # once a day, at a fixed time
        assert (day, month, weekday, year) == ("*", "*", "?", "*"), rule["ScheduleExpression"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_writer_and_reader_are_in_different_azs(env):
    instances = resources_of(stack(env, "data"), "AWS::RDS::DBInstance").values()
    zones = [json.dumps(props(i)["AvailabilityZone"], sort_keys=True) for i in instances]
    assert len(zones) == 1 + load_environment(env).database.reader and len(set(zones)) == len(zones)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cost_drivers_follow_the_config_nat_reader_and_auto_pause(env):
    config = load_environment(env)
    nats = 1 if config.network.nat_mode == "single" else config.network.az_count
    assert len(resources_of(stack(env, "network"), "AWS::EC2::NatGateway")) == nats
    assert len(resources_of(stack(env, "data"), "AWS::RDS::DBInstance")) == 1 + config.database.reader
    _, cluster = one(stack(env, "data"), "AWS::RDS::DBCluster")
    scaling = props(cluster)["ServerlessV2ScalingConfiguration"]
    assert scaling["MinCapacity"] == config.database.min_acu
    assert scaling.get("SecondsUntilAutoPause") == config.database.seconds_until_auto_pause
