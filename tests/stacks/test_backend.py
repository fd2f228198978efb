"""Invariants of the backend stack on every platform (App Runner, ECS Express Mode), the wiring contract
both platforms share, and unit tests of the App Runner log-retention handler against moto.

Cases: every environment in config/, plus, for each platform no environment there uses, a config built here
from the first environment with only `backend.platform` changed, so every property holds on both platforms
whatever the adopter's config/ holds.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import boto3
import pytest
from cfn_helpers import (
    CASE_CONFIGS,
    CASES,
    CASES_BY_PLATFORM,
    as_list,
    case_stack,
    one,
    props,
    require,
    resources_of,
    statements,
)
from moto import mock_aws

from generator import compose, contract, naming
from generator.config import (
    APP_RUNNER,
    ECS_EXPRESS,
    EXPRESS_ALB_IDLE_TIMEOUT_SECONDS,
    SECRET_LOOKING_NAME,
    EnvironmentConfig,
    secret_variable,
)
from generator.stacks import _waf
from generator.stacks.handlers import apprunner_log_retention as handler_module

SECRET_LOOKING = SECRET_LOOKING_NAME  # the config refuses such names for plain variables: the same pattern
SECRET_READER = {APP_RUNNER: "InstanceRole", ECS_EXPRESS: "ExecutionRole"}  # what resolves the injected secrets
CONTRACT_OUTPUTS = {"ServiceUrl", "ServiceArn", "ServiceId", "Platform"}
SERVICE_TYPE = {APP_RUNNER: "AWS::AppRunner::Service", ECS_EXPRESS: "AWS::ECS::ExpressGatewayService"}
RUNTIME_ROLE = {APP_RUNNER: "InstanceRole", ECS_EXPRESS: "TaskRole"}       # what the containers run as
PULL_ROLE = {APP_RUNNER: "AccessRole", ECS_EXPRESS: "ExecutionRole"}       # what pulls the image
SERVICE_HEARTBEAT_SECONDS = 15  # the reference service's SSE_HEARTBEAT_SECONDS default (apprunner/README.md)


CONFIGS = CASE_CONFIGS
BY_PLATFORM = CASES_BY_PLATFORM
APP_RUNNER_CASES, EXPRESS_CASES = BY_PLATFORM[APP_RUNNER], BY_PLATFORM[ECS_EXPRESS]
ONE_PER_PLATFORM = tuple(cases[0] for cases in BY_PLATFORM.values())


def test_cases_cover_every_platform():
    assert all(BY_PLATFORM.values()), BY_PLATFORM


def _files(case: str) -> dict[str, dict]:
    return {name: case_stack(case, name) for name in ("backend", "root", "monitoring")}


def config(case: str) -> EnvironmentConfig:
    return CONFIGS[case]


def platform(case: str) -> str:
    return config(case).backend.platform


def tmpl(case: str) -> dict:
    return _files(case)["backend"]


def service(case: str) -> dict:
    return props(one(tmpl(case), SERVICE_TYPE[platform(case)])[1])


def image_config(case: str) -> dict:
    return service(case)["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]


def image(case: str):
    if platform(case) == APP_RUNNER:
        return service(case)["SourceConfiguration"]["ImageRepository"]["ImageIdentifier"]
    return service(case)["PrimaryContainer"]["Image"]


def plain_vars(case: str) -> dict[str, object]:
    """The contract's plain variables (ECS also gets PORT, which App Runner sets itself)."""
    if platform(case) == APP_RUNNER:
        return {v["Name"]: v["Value"] for v in image_config(case)["RuntimeEnvironmentVariables"]}
    found = {v["Name"]: v["Value"] for v in service(case)["PrimaryContainer"]["Environment"]}
    assert found.pop(contract.PORT) == str(config(case).backend.port)
    return found


def injected_secrets(case: str) -> list[tuple[str, object]]:
    if platform(case) == APP_RUNNER:
        return [(s["Name"], s["Value"]) for s in image_config(case)["RuntimeEnvironmentSecrets"]]
    return [(s["Name"], s["ValueFrom"]) for s in service(case)["PrimaryContainer"]["Secrets"]]


def settings(case: str, app_runner_type: str, express_property: str) -> dict:
    """Where a backend setting lives: App Runner's own resource of `app_runner_type`, or that property of the
    ECS Express service."""
    if platform(case) == APP_RUNNER:
        return props(one(tmpl(case), app_runner_type)[1])
    return service(case)[express_property]


def network(case: str) -> tuple[object, object]:
    """(subnets, security groups) the backend's traffic leaves from."""
    net = settings(case, "AWS::AppRunner::VpcConnector", "NetworkConfiguration")
    return net["Subnets"], net["SecurityGroups"]


def scaling_bounds(case: str) -> tuple[int, int]:
    low, high = ("MinSize", "MaxSize") if platform(case) == APP_RUNNER else ("MinTaskCount", "MaxTaskCount")
    bounds = settings(case, "AWS::AppRunner::AutoScalingConfiguration", "ScalingTarget")
    return bounds[low], bounds[high]


def policy_statements(role: dict) -> list[dict]:
    return [s for policy in props(role).get("Policies", []) for s in statements(policy["PolicyDocument"])]


def role(case: str, logical_id: str) -> dict:
    return tmpl(case)["Resources"][logical_id]


def secret_refs(case: str) -> list[dict]:
    """`Ref`s of the parameters holding the ARNs of the case's application secrets, in config order."""
    return [ref(naming.app_secret_output(name)) for name in config(case).backend.secrets]


def ref(name: str) -> dict:
    return {"Ref": name}


def allow_actions(stmts: list[dict]) -> list[str]:
    return [a for s in stmts if s["Effect"] == "Allow" for a in as_list(s["Action"])]


def allowed_pairs(role_: dict) -> set[tuple[str, str]]:
    return {(a, str(r)) for s in policy_statements(role_) if s["Effect"] == "Allow"
            for a in as_list(s["Action"]) for r in as_list(s["Resource"])}


# ---- the contract both platforms keep ---------------------------------------------------------------

def test_both_platforms_take_the_same_parameters_and_offer_the_same_contract_outputs():
    """Switching platform swaps the `backend` nested stack in place: same inputs, same contract outputs;
    anything more a platform outputs is exactly what its metrics need (read by monitoring only)."""
    parameters = {platform(c): set(tmpl(c)["Parameters"]) for c in ONE_PER_PLATFORM}
    assert parameters[APP_RUNNER] == parameters[ECS_EXPRESS]
    for case in ONE_PER_PLATFORM:
        outputs = set(tmpl(case)["Outputs"])
        assert outputs >= CONTRACT_OUTPUTS
        metric_parameters = set(compose.backend_module(config(case)).metrics(config(case)).parameters)
        assert metric_parameters <= outputs, case
        assert outputs - CONTRACT_OUTPUTS == metric_parameters - CONTRACT_OUTPUTS, case
        assert tmpl(case)["Outputs"]["Platform"]["Value"] == platform(case)


@pytest.mark.parametrize("case", ONE_PER_PLATFORM)
def test_only_monitoring_reads_a_platform_specific_backend_output(case):
    """Root outputs and every other stack wire only contract outputs from the backend stack."""
    root_tmpl = _files(case)["root"]
    assert root_tmpl["Resources"]["Backend"]["Type"] == "AWS::CloudFormation::Stack"
    assert root_tmpl["Resources"]["Backend"]["Properties"]["TemplateURL"] == "backend.yaml"
    for name, (child, output, _) in compose.ROOT_OUTPUTS.items():
        if child == "backend":
            assert output in CONTRACT_OUTPUTS, name
    for logical_id, resource in root_tmpl["Resources"].items():
        for value in resource.get("Properties", {}).get("Parameters", {}).values():
            if value.get("Fn::GetAtt", [None])[0] == "Backend":
                output = value["Fn::GetAtt"][1].removeprefix("Outputs.")
                assert output in CONTRACT_OUTPUTS or logical_id == "Monitoring", (logical_id, output)
    assert root_tmpl["Outputs"]["BackendPlatform"]["Value"] == {"Fn::GetAtt": ["Backend", "Outputs.Platform"]}


def test_no_logical_id_changes_type_between_platforms():
    """CloudFormation refuses an update that changes the type behind a logical id ("Update of resource type
    is not permitted"), so switching platform in place needs every shared id to keep its type."""
    types_ = [{lid: r["Type"] for lid, r in tmpl(case)["Resources"].items()} for case in ONE_PER_PLATFORM]
    shared = set(types_[0]) & set(types_[1])
    assert shared, "the WAF resources are shared"
    assert {lid for lid in shared if types_[0][lid] != types_[1][lid]} == set()


@pytest.mark.parametrize("case", CASES)
def test_backend_stack_is_built_by_the_platforms_module(case):
    module = compose.backend_module(config(case))
    assert platform(case) == module.PLATFORM and module.SPEC.name == "backend"
    assert tmpl(case)["Description"].endswith(module.DESCRIPTION)


# ---- image and deployment -------------------------------------------------------------------------

def test_image_tag_pattern_refuses_latest_and_accepts_a_sha():
    pattern = contract.IMAGE_TAG_PATTERN
    assert not re.search(pattern, "latest")
    assert not re.search(pattern, "")
    assert re.search(pattern, "3f2a9c1d0b7e4f5a6c8d9e0f1a2b3c4d5e6f7a8b")
    assert re.search(pattern, "latest-but-not-really")


@pytest.mark.parametrize("case", CASES)
def test_image_tag_is_a_parameter_wired_from_the_root(case):
    params = tmpl(case)["Parameters"]["ImageTag"]
    assert params["AllowedPattern"] == contract.IMAGE_TAG_PATTERN
    assert "Default" not in params
    root_tmpl = _files(case)["root"]
    assert root_tmpl["Parameters"]["ImageTag"]["AllowedPattern"] == contract.IMAGE_TAG_PATTERN
    assert root_tmpl["Resources"]["Backend"]["Properties"]["Parameters"]["ImageTag"] == ref("ImageTag")


@pytest.mark.parametrize("case", CASES)
def test_image_is_the_bootstrap_repository_at_the_image_tag(case):
    repository = naming.ecr_repository_name(config(case).app_name)
    assert image(case) == {
        "Fn::Sub": f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{repository}:${{ImageTag}}"}
    assert "latest" not in str(image(case))


@pytest.mark.parametrize("case", APP_RUNNER_CASES)
def test_auto_deployments_are_off(case):
    repo = service(case)["SourceConfiguration"]
    assert repo["AutoDeploymentsEnabled"] is False and repo["ImageRepository"]["ImageRepositoryType"] == "ECR"


@pytest.mark.parametrize("case", CASES)
def test_service_name_port_and_size_come_from_config(case):
    cfg = config(case)
    svc = service(case)
    # No fixed name on either platform: the service's Tags are create-only, so a tag change replaces it,
    # which CloudFormation can only do when the service is not named by the template.
    assert "ServiceName" not in svc
    if platform(case) == APP_RUNNER:
        assert image_config(case)["Port"] == str(cfg.backend.port)
        size = (svc["InstanceConfiguration"]["Cpu"], svc["InstanceConfiguration"]["Memory"])
    else:
        assert svc["PrimaryContainer"]["ContainerPort"] == cfg.backend.port
        size = (svc["Cpu"], svc["Memory"])
    assert size == (cfg.backend.cpu, cfg.backend.memory)


# ---- app contract and secrets ---------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_plain_variables_are_exactly_the_contract_then_the_apps_own(case):
    kit = contract.PLAIN_VARIABLES + (contract.RUNS_API_VARIABLES if config(case).workers.enabled else ())
    names = tuple(plain_vars(case))
    assert names[:len(kit)] == kit
    own = {name: plain_vars(case)[name] for name in names[len(kit):]}
    assert own == config(case).backend.environment
    assert contract.PORT not in plain_vars(case)


@pytest.mark.parametrize("case", CASES)
def test_plain_variables_carry_the_expected_values(case):
    cfg = config(case)
    values = plain_vars(case)
    assert values[contract.ENVIRONMENT] == cfg.name
    assert values[contract.REGION] == ref("AWS::Region")
    assert values[contract.DB_HOST] == ref("DatabaseEndpoint")
    assert values[contract.DB_SECRET_ARN] == ref("DatabaseSecretArn")  # read at runtime by the service
    assert values[contract.DB_SSLMODE] == "require"
    assert values[contract.CORS_ALLOWED_ORIGINS] == ref("FrontendOrigins")
    assert values[contract.SSE_MAX_STREAM_SECONDS] == str(cfg.backend.sse_max_stream_seconds)


@pytest.mark.parametrize("case", APP_RUNNER_CASES)
def test_app_runner_streams_end_before_its_120_second_request_limit(case):
    assert int(plain_vars(case)[contract.SSE_MAX_STREAM_SECONDS]) < 120


@pytest.mark.parametrize("case", EXPRESS_CASES)
def test_express_streams_stay_busy_within_the_load_balancer_idle_timeout(case):
    """An ALB closes a connection idle for its idle timeout; the service's heartbeat comes well before it."""
    assert SERVICE_HEARTBEAT_SECONDS * 2 <= EXPRESS_ALB_IDLE_TIMEOUT_SECONDS
    backend_cfg = config(case).backend
    streams_per_task = backend_cfg.requests_per_target * backend_cfg.sse_max_stream_seconds / 60
    assert streams_per_task <= 4000  # the SSE benchmark's figure per process (apprunner/README.md)


@pytest.mark.parametrize("case", CASES)
def test_no_plain_variable_looks_like_a_secret(case):
    """A secret-looking name is allowed only for an ARN: name ends in _ARN and the value is a `*SecretArn`
    parameter (a pointer the app resolves at runtime, not the secret)."""
    for name, value in plain_vars(case).items():
        if SECRET_LOOKING.search(name):
            assert name.endswith("_ARN"), name
            assert isinstance(value, dict) and value.get("Ref", "").endswith("SecretArn"), (name, value)
        assert value not in secret_refs(case), name


@pytest.mark.parametrize("case", CASES)
def test_secrets_are_injected_only_by_arn(case):
    found = injected_secrets(case)
    assert [name for name, _ in found] == [secret_variable(name) for name in config(case).backend.secrets]
    assert [value for _, value in found] == secret_refs(case)


@pytest.mark.parametrize("case", CASES)
def test_only_the_secret_injecting_role_reads_the_application_secrets(case):
    """Across every stack of the environment, GetSecretValue on an application secret is granted by the one
    backend role the platform injects secrets with (App Runner: instance role; ECS: execution role) and, with
    workers, the worker's execution and task roles only; no secret carries a resource policy that widens it."""
    root = case_stack(case, "root")
    names = ["root", *(res["Properties"]["TemplateURL"].removesuffix(".yaml") for res in root["Resources"].values()
                       if res["Type"] == "AWS::CloudFormation::Stack")]
    readers = []
    for name in names:
        for lid, res in case_stack(case, name)["Resources"].items():
            assert res["Type"] != "AWS::SecretsManager::ResourcePolicy", f"{name}/{lid}"
            for s in (s for p in props(res).get("Policies", []) for s in statements(p["PolicyDocument"])):
                if s["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in as_list(s["Action"]) \
                        and any(r in secret_refs(case) for r in as_list(s["Resource"])):
                    readers.append(f"{name}/{lid}")
    # the worker tier, when on, injects them too (execution role) and its task role reads them (workers stack)
    workers = ["workers/ExecutionRole", "workers/TaskRole"] if config(case).workers.enabled else []
    assert readers == [f"backend/{SECRET_READER[platform(case)]}", *workers]


@pytest.mark.parametrize("case", CASES)
def test_no_parameter_carries_a_secret_value(case):
    for name, param in tmpl(case)["Parameters"].items():
        if SECRET_LOOKING.search(name):
            assert name.endswith("Arn"), name
        assert "NoEcho" not in param and "Default" not in param, name


# ---- roles ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_no_role_allows_a_wildcard_action(case):
    roles = require(tmpl(case), "AWS::IAM::Role")
    for logical_id, role_ in roles.items():
        actions = allow_actions(policy_statements(role_))
        assert all("*" not in action for action in actions), logical_id
    assert allow_actions(policy_statements(roles[RUNTIME_ROLE[platform(case)]]))


@pytest.mark.parametrize("case", CASES)
def test_runtime_role_names_only_the_expected_resources(case):
    runtime = role(case, RUNTIME_ROLE[platform(case)])
    principal = props(runtime)["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    expected = {
        ("kms:Decrypt", str(ref("DataKeyArn"))),
        # the API enqueues runs when the environment has workers (tests/stacks/test_workers.py)
        *([("sqs:SendMessage", str(ref("RunQueueArn"))), ("kms:GenerateDataKey", str(ref("DataKeyArn")))]
          if config(case).workers.enabled else []),
    }
    if platform(case) == APP_RUNNER:  # App Runner resolves RuntimeEnvironmentSecrets with the instance role
        assert principal == {"Service": ["tasks.apprunner.amazonaws.com"]}
        expected |= {("secretsmanager:GetSecretValue", str(secret)) for secret in secret_refs(case)}
    else:  # ECS injects secrets with the execution role; the task role never reads the Gemini secret
        assert principal == {"Service": "ecs-tasks.amazonaws.com"}
        condition = props(runtime)["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
        assert condition["StringEquals"] == {"aws:SourceAccount": ref("AWS::AccountId")}
    assert props(runtime)["ManagedPolicyArns"] == [ref("DataAccessPolicyArn")]
    assert allowed_pairs(runtime) == expected


@pytest.mark.parametrize("case", CASES)
def test_runtime_role_decrypts_only_through_secrets_manager_and_denies_iam(case):
    stmts = policy_statements(role(case, RUNTIME_ROLE[platform(case)]))
    kms = next(s for s in stmts if s["Action"] == ["kms:Decrypt"])
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": {
        "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}
    deny = [s for s in stmts if s["Effect"] == "Deny"]
    assert deny and deny[0]["Action"] == ["iam:*"] and deny[0]["Resource"] == ["*"]


@pytest.mark.parametrize("case", CASES)
def test_pull_role_pulls_only_the_backend_repository(case):
    pull = role(case, PULL_ROLE[platform(case)])
    repository = naming.ecr_repository_name(config(case).app_name)
    principal = {APP_RUNNER: "build.apprunner.amazonaws.com", ECS_EXPRESS: "ecs-tasks.amazonaws.com"}
    assert props(pull)["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": [principal[platform(case)]]}
    stmts = {s["Sid"]: s for s in policy_statements(pull)}
    assert stmts["PullBackendImage"]["Resource"] == [{"Fn::Sub": (
        f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/{repository}")}]
    assert stmts["RegistryLogin"]["Action"] == ["ecr:GetAuthorizationToken"]
    decrypt = stmts["DecryptImageLayers"]
    assert decrypt["Action"] == ["kms:Decrypt"]
    assert decrypt["Condition"]["ForAnyValue:StringEquals"] == {
        "kms:ResourceAliases": naming.bootstrap_key_alias(config(case).app_name)}
    assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]
    assert "ManagedPolicyArns" not in props(pull)


@pytest.mark.parametrize("case", EXPRESS_CASES)
def test_execution_role_reads_only_the_declared_secrets_and_its_own_log_group(case):
    pairs = allowed_pairs(role(case, "ExecutionRole"))
    assert {r for a, r in pairs if a == "secretsmanager:GetSecretValue"} == {str(r) for r in secret_refs(case)}
    assert {r for a, r in pairs if a.startswith("logs:")} == {str({"Fn::GetAtt": ["ServiceLogs", "Arn"]})}
    assert {a for a, _ in pairs if a.startswith("logs:")} == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert {(a, r) for a, r in pairs if r == "*"} == {("ecr:GetAuthorizationToken", "*")}


@pytest.mark.parametrize("case", EXPRESS_CASES)
def test_infrastructure_role_is_trusted_by_ecs_with_the_express_managed_policy(case):
    infra = props(role(case, "InfrastructureRole"))
    assert infra["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["ecs.amazonaws.com"]}
    assert infra["ManagedPolicyArns"] == [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                                      "AmazonECSInfrastructureRoleforExpressGatewayServices"}]
    assert "Policies" not in infra
    svc = service(case)
    for key, logical_id in (("InfrastructureRoleArn", "InfrastructureRole"), ("ExecutionRoleArn", "ExecutionRole"),
                            ("TaskRoleArn", "TaskRole")):
        assert svc[key] == {"Fn::GetAtt": [logical_id, "Arn"]}, key


# ---- network, health, encryption, scaling ---------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_backend_uses_only_the_app_subnets_and_connector_sg(case):
    assert network(case) == (ref("AppSubnetIds"), [ref("ConnectorSecurityGroupId")])
    wired = _files(case)["root"]["Resources"]["Backend"]["Properties"]["Parameters"]
    assert wired["AppSubnetIds"] == {"Fn::GetAtt": ["Network", "Outputs.AppSubnetIds"]}
    assert wired["ConnectorSecurityGroupId"] == {"Fn::GetAtt": ["Network", "Outputs.ConnectorSecurityGroupId"]}


@pytest.mark.parametrize("case", APP_RUNNER_CASES)
def test_app_runner_egress_leaves_through_the_connector(case):
    connector_id, _ = one(tmpl(case), "AWS::AppRunner::VpcConnector")
    egress = service(case)["NetworkConfiguration"]["EgressConfiguration"]
    assert egress == {"EgressType": "VPC", "VpcConnectorArn": {"Fn::GetAtt": [connector_id, "VpcConnectorArn"]}}


@pytest.mark.parametrize("case", CASES)
def test_health_check_uses_the_configured_path(case):
    path = config(case).backend.health_check_path
    assert path == contract.HEALTH_PATH
    if platform(case) == ECS_EXPRESS:
        assert service(case)["HealthCheckPath"] == path
        return
    health = service(case)["HealthCheckConfiguration"]
    assert health["Protocol"] == "HTTP" and health["Path"] == path
    for field in ("Interval", "Timeout", "HealthyThreshold", "UnhealthyThreshold"):
        assert 1 <= health[field] <= 20, field
    assert health["Timeout"] < health["Interval"]


@pytest.mark.parametrize("case", APP_RUNNER_CASES)
def test_app_runner_service_is_encrypted_untraced_and_publicly_reachable(case):
    svc = service(case)
    assert svc["EncryptionConfiguration"] == {"KmsKey": ref("DataKeyArn")}
    assert svc["ObservabilityConfiguration"] == {"ObservabilityEnabled": False}  # the image emits no traces
    assert not resources_of(tmpl(case), "AWS::AppRunner::ObservabilityConfiguration")
    assert svc["NetworkConfiguration"]["IngressConfiguration"] == {"IsPubliclyAccessible": True}


@pytest.mark.parametrize("case", CASES)
def test_autoscaling_bounds_come_from_config(case):
    cfg = config(case).backend
    assert scaling_bounds(case) == (cfg.min_instances, cfg.max_instances)


@pytest.mark.parametrize("case", APP_RUNNER_CASES)
def test_app_runner_autoscaling_is_unnamed_and_scales_on_concurrency(case):
    scaling_id, scaling = one(tmpl(case), "AWS::AppRunner::AutoScalingConfiguration")
    assert props(scaling)["MaxConcurrency"] == config(case).backend.max_concurrency
    assert "AutoScalingConfigurationName" not in props(scaling)
    assert service(case)["AutoScalingConfigurationArn"] == {
        "Fn::GetAtt": [scaling_id, "AutoScalingConfigurationArn"]}


@pytest.mark.parametrize("case", EXPRESS_CASES)
def test_express_scales_on_requests_per_task_in_its_own_fargate_cluster(case):
    cfg = config(case)
    target = service(case)["ScalingTarget"]
    assert target["AutoScalingMetric"] == "REQUEST_COUNT_PER_TARGET"
    assert target["AutoScalingTargetValue"] == cfg.backend.requests_per_target
    cluster_id, cluster = one(tmpl(case), "AWS::ECS::Cluster")
    assert service(case)["Cluster"] == ref(cluster_id)
    assert props(cluster)["ClusterName"] == naming.ecs_backend_cluster_name(cfg)
    assert props(cluster)["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]
    assert props(cluster)["CapacityProviders"] == ["FARGATE"]
    logs = service(case)["PrimaryContainer"]["AwsLogsConfiguration"]
    assert logs["LogGroup"] == ref("ServiceLogs")


@pytest.mark.parametrize("case", CASES)
def test_service_url_output_is_https(case):
    value = tmpl(case)["Outputs"]["ServiceUrl"]["Value"]
    text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
    assert text.startswith("https://${") and text.count("${") == 1


@pytest.mark.parametrize("case", EXPRESS_CASES)
def test_express_url_strips_any_scheme_from_the_endpoint(case):
    host = tmpl(case)["Outputs"]["ServiceUrl"]["Value"]["Fn::Sub"][1]["Host"]
    assert host == {"Fn::Join": ["", {"Fn::Split": ["https://", {"Fn::GetAtt": ["ExpressService", "Endpoint"]}]}]}


# ---- WAF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_waf_is_associated_with_the_backends_endpoint(case):
    acl_id, _ = one(tmpl(case), "AWS::WAFv2::WebACL")
    _, assoc = one(tmpl(case), "AWS::WAFv2::WebACLAssociation")
    endpoint = {APP_RUNNER: ["Service", "ServiceArn"],  # App Runner services take a web ACL directly
                ECS_EXPRESS: ["ExpressService", "ECSManagedResourceArns.IngressPath.LoadBalancerArn"]}  # managed ALB
    assert props(assoc) == {"ResourceArn": {"Fn::GetAtt": endpoint[platform(case)]},
                            "WebACLArn": {"Fn::GetAtt": [acl_id, "Arn"]}}


@pytest.mark.parametrize("case", CASES)
def test_waf_rules_rate_limit_and_managed_groups(case):
    cfg = config(case)
    _, acl = one(tmpl(case), "AWS::WAFv2::WebACL")
    p = props(acl)
    assert p["Scope"] == "REGIONAL" and p["Name"] == naming.web_acl_name(cfg)
    assert p["VisibilityConfig"]["MetricName"] == p["Name"]
    rules = {r["Name"]: r for r in p["Rules"]}
    rate = rules[_waf.RATE_LIMIT_RULE]["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == "IP" and rate["Limit"] == cfg.backend.waf_rate_limit_per_5_min
    assert "Block" in rules[_waf.RATE_LIMIT_RULE]["Action"]
    for group in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        statement = rules[group]["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", group)
        assert rules[group]["OverrideAction"] == {"None": {}}
    assert len({r["Priority"] for r in p["Rules"]}) == len(p["Rules"])
    assert all(r["VisibilityConfig"]["CloudWatchMetricsEnabled"] for r in p["Rules"])


@pytest.mark.parametrize("case", CASES)
def test_waf_logs_go_to_an_encrypted_group_with_credentials_redacted(case):
    cfg = config(case)
    group = tmpl(case)["Resources"]["WafLogs"]
    assert props(group)["LogGroupName"] == naming.waf_log_group_name(cfg)
    assert props(group)["LogGroupName"].startswith("aws-waf-logs-")
    assert props(group)["KmsKeyId"] == ref("OpsKeyArn")
    assert props(group)["RetentionInDays"] == cfg.logging.retention_days >= 30
    _, logging_config = one(tmpl(case), "AWS::WAFv2::LoggingConfiguration")
    redacted = [f["SingleHeader"]["Name"] for f in props(logging_config)["RedactedFields"]]
    assert {"authorization", "cookie"} <= set(redacted)


# ---- logs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", APP_RUNNER_CASES)
def test_app_runner_log_groups_get_retention(case):
    cfg = config(case)
    _, custom = one(tmpl(case), "AWS::CloudFormation::CustomResource")
    p = props(custom)
    assert p["ServiceName"] == {"Fn::Select": [1, {"Fn::Split": ["/", {"Fn::GetAtt": ["Service", "ServiceArn"]}]}]}
    assert p["ServiceId"] == {"Fn::GetAtt": ["Service", "ServiceId"]}
    assert p["RetentionInDays"] == cfg.logging.retention_days >= 30
    assert p["KmsKeyArn"] == ref("OpsKeyArn")
    assert p["ServiceToken"] == {"Fn::GetAtt": ["LogRetentionFunction", "Arn"]}


@pytest.mark.parametrize("case", APP_RUNNER_CASES)
def test_log_retention_function_runs_the_handler_file_with_scoped_permissions(case):
    function = props(tmpl(case)["Resources"]["LogRetentionFunction"])
    assert function["Code"]["ZipFile"] == Path(handler_module.__file__).read_text(encoding="utf-8")
    assert function["Handler"] == "index.handler"
    scoped = next(s for s in policy_statements(role(case, "LogRetentionFunctionRole"))
                  if s["Sid"] == "ConfigureAppRunnerLogGroups")
    assert scoped["Resource"] == [{"Fn::Sub": [
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/apprunner/${Name}/*",
        {"Name": {"Fn::Select": [1, {"Fn::Split": ["/", {"Fn::GetAtt": ["Service", "ServiceArn"]}]}]}}]}]
    assert sorted(scoped["Action"]) == ["logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:PutRetentionPolicy"]


@pytest.mark.parametrize("case", CASES)
def test_every_log_group_is_encrypted_with_retention(case):
    for lid, group in require(tmpl(case), "AWS::Logs::LogGroup").items():
        assert props(group)["KmsKeyId"] == ref("OpsKeyArn"), lid
        assert props(group)["RetentionInDays"] >= 30, lid
        assert group["DeletionPolicy"] == ("RetainExceptOnCreate" if config(case).production else "Delete"), lid


# ---- handler logic (moto) -------------------------------------------------------------------------

KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
NAMES = handler_module.log_group_names("adagency-dev-backend", "abc123")


@pytest.fixture
def logs_client(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("logs")


def groups(client) -> dict[str, dict]:
    found = client.describe_log_groups(logGroupNamePrefix="/aws/apprunner/")["logGroups"]
    return {g["logGroupName"]: g for g in found}


def test_handler_log_group_names_match_app_runner():
    assert NAMES == ["/aws/apprunner/adagency-dev-backend/abc123/service",
                     "/aws/apprunner/adagency-dev-backend/abc123/application"]


def test_handler_creates_missing_groups_with_key_and_retention(logs_client):
    handler_module.configure(logs_client, NAMES, 30, KEY)
    found = groups(logs_client)
    assert set(found) == set(NAMES)
    assert all(g["retentionInDays"] == 30 and g["kmsKeyId"] == KEY for g in found.values())


def test_handler_fixes_groups_app_runner_already_created(logs_client, monkeypatch):
    logs_client.create_log_group(logGroupName=NAMES[0])  # as App Runner creates it: no key, no retention
    associated = []
    monkeypatch.setattr(logs_client, "associate_kms_key", lambda **kw: associated.append(kw))  # moto lacks it
    handler_module.configure(logs_client, NAMES, 90, KEY)
    assert associated == [{"logGroupName": NAMES[0], "kmsKeyId": KEY}]
    assert {g["retentionInDays"] for g in groups(logs_client).values()} == {90}


def test_handler_is_idempotent_and_works_without_a_key(logs_client):
    handler_module.configure(logs_client, NAMES, 30)
    handler_module.configure(logs_client, NAMES, 60)
    found = groups(logs_client)
    assert {g["retentionInDays"] for g in found.values()} == {60}
    assert not any("kmsKeyId" in g for g in found.values())


@pytest.fixture
def responses(monkeypatch):
    """A stand-in for CloudFormation's cfnresponse module; records every answer."""
    sent = []
    module = types.SimpleNamespace(SUCCESS="SUCCESS", FAILED="FAILED")
    module.send = lambda event, context, status, data, physical_id, reason=None: sent.append(
        {"status": status, "data": data, "physical_id": physical_id, "reason": reason})
    monkeypatch.setitem(sys.modules, "cfnresponse", module)
    return sent


def event(request_type: str, **props_) -> dict:
    base = {"ServiceToken": "arn", "ServiceName": "adagency-dev-backend", "ServiceId": "abc123",
            "RetentionInDays": "30", "KmsKeyArn": KEY}
    result = {"RequestType": request_type, "ResourceProperties": {**base, **props_}}
    if request_type != "Create":
        result["PhysicalResourceId"] = "/aws/apprunner/adagency-dev-backend/old"
    return result


def test_handler_create_answers_success_with_the_group_prefix(logs_client, responses):
    handler_module.handler(event("Create"), None)
    assert responses == [{"status": "SUCCESS", "data": {"LogGroupNames": ",".join(NAMES)},
                          "physical_id": "/aws/apprunner/adagency-dev-backend/abc123", "reason": None}]
    assert set(groups(logs_client)) == set(NAMES)


def test_handler_delete_keeps_the_logs_and_answers_with_the_same_id(logs_client, responses):
    logs_client.create_log_group(logGroupName=NAMES[0])
    handler_module.handler(event("Delete"), None)
    assert responses[0]["status"] == "SUCCESS"
    assert responses[0]["physical_id"] == "/aws/apprunner/adagency-dev-backend/old"
    assert set(groups(logs_client)) == {NAMES[0]}


def test_handler_answers_failed_with_a_reason(logs_client, responses):
    handler_module.handler(event("Create", ServiceId=None) | {"ResourceProperties": {}}, None)
    assert responses[0]["status"] == "FAILED"
    assert "KeyError" in responses[0]["reason"]


def test_handler_reports_aws_errors(monkeypatch, responses):
    class Broken:
        class exceptions:  # mirrors boto3's client.exceptions
            ResourceAlreadyExistsException = type("ResourceAlreadyExistsException", (Exception,), {})

        def create_log_group(self, **_):
            raise RuntimeError("AccessDenied: not authorized to perform logs:CreateLogGroup")

    monkeypatch.setattr(handler_module.boto3, "client", lambda *_a, **_k: Broken())
    handler_module.handler(event("Update"), None)
    assert responses[0]["status"] == "FAILED"
    assert "AccessDenied" in responses[0]["reason"]
