"""Invariants of the backend stack (App Runner, roles, connector, WAF, log retention), per environment,
and unit tests of the App Runner log-retention handler against moto."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import boto3
import pytest
from cfn_helpers import ENVIRONMENTS, as_list, one, props, require, stack, statements
from moto import mock_aws

from generator import contract, naming
from generator.config import SECRET_LOOKING_NAME, load_environment, secret_variable
from generator.stacks import _waf
from generator.stacks.handlers import apprunner_log_retention as handler_module

SECRET_LOOKING = SECRET_LOOKING_NAME  # the config refuses such names for plain variables: the same pattern


def tmpl(env: str) -> dict:
    return stack(env, "backend")


def service(env: str) -> dict:
    return props(one(tmpl(env), "AWS::AppRunner::Service")[1])


def image_config(env: str) -> dict:
    return service(env)["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]


def plain_vars(env: str) -> dict[str, object]:
    return {v["Name"]: v["Value"] for v in image_config(env)["RuntimeEnvironmentVariables"]}


def secret_refs(env: str) -> list[dict]:
    """`Ref`s of the parameters holding the ARNs of the environment's application secrets, in config order."""
    return [ref(naming.app_secret_output(name)) for name in load_environment(env).backend.secrets]


def policy_statements(role: dict) -> list[dict]:
    return [s for policy in props(role)["Policies"] for s in statements(policy["PolicyDocument"])]


def role(env: str, logical_id: str) -> dict:
    return tmpl(env)["Resources"][logical_id]


def ref(name: str) -> dict:
    return {"Ref": name}


# ---- image and deployment -------------------------------------------------------------------------

def test_image_tag_pattern_refuses_latest_and_accepts_a_sha():
    pattern = contract.IMAGE_TAG_PATTERN
    assert not re.search(pattern, "latest")
    assert not re.search(pattern, "")
    assert re.search(pattern, "3f2a9c1d0b7e4f5a6c8d9e0f1a2b3c4d5e6f7a8b")
    assert re.search(pattern, "latest-but-not-really")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_image_tag_is_a_parameter_wired_from_the_root(env):
    params = tmpl(env)["Parameters"]["ImageTag"]
    assert params["AllowedPattern"] == contract.IMAGE_TAG_PATTERN
    assert "Default" not in params
    root_tmpl = stack(env, "root")
    assert root_tmpl["Parameters"]["ImageTag"]["AllowedPattern"] == contract.IMAGE_TAG_PATTERN
    assert root_tmpl["Resources"]["Backend"]["Properties"]["Parameters"]["ImageTag"] == ref("ImageTag")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_image_is_the_bootstrap_repository_at_the_image_tag(env):
    repo = service(env)["SourceConfiguration"]["ImageRepository"]
    repository = naming.ecr_repository_name(load_environment(env).app_name)
    assert repo["ImageRepositoryType"] == "ECR"
    assert repo["ImageIdentifier"] == {
        "Fn::Sub": f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{repository}:${{ImageTag}}"}
    assert "latest" not in str(repo)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_auto_deployments_are_off(env):
    assert service(env)["SourceConfiguration"]["AutoDeploymentsEnabled"] is False


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_service_name_port_and_size_come_from_config(env):
    config = load_environment(env)
    svc = service(env)
    assert svc["ServiceName"] == naming.app_runner_service_name(config)
    assert image_config(env)["Port"] == str(config.backend.port)
    assert (svc["InstanceConfiguration"]["Cpu"], svc["InstanceConfiguration"]["Memory"]) == (
        config.backend.cpu, config.backend.memory)


# ---- app contract and secrets ---------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_plain_variables_are_exactly_the_contract_then_the_apps_own(env):
    names = tuple(plain_vars(env))
    assert names[:len(contract.PLAIN_VARIABLES)] == contract.PLAIN_VARIABLES
    own = {name: plain_vars(env)[name] for name in names[len(contract.PLAIN_VARIABLES):]}
    assert own == load_environment(env).backend.environment
    assert contract.PORT not in plain_vars(env)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_plain_variables_carry_the_expected_values(env):
    config = load_environment(env)
    values = plain_vars(env)
    assert values[contract.ENVIRONMENT] == config.name
    assert values[contract.REGION] == ref("AWS::Region")
    assert values[contract.DB_HOST] == ref("DatabaseEndpoint")
    assert values[contract.DB_SSLMODE] == "require"
    assert values[contract.CORS_ALLOWED_ORIGINS] == ref("FrontendOrigins")
    assert values[contract.SSE_MAX_STREAM_SECONDS] == str(config.backend.sse_max_stream_seconds)
    assert int(values[contract.SSE_MAX_STREAM_SECONDS]) < 120  # App Runner cuts requests at 120 s


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_plain_variable_looks_like_a_secret(env):
    """A secret-looking name is allowed only for an ARN: name ends in _ARN and the value is a `*SecretArn`
    parameter (a pointer the app resolves at runtime, not the secret)."""
    for name, value in plain_vars(env).items():
        if SECRET_LOOKING.search(name):
            assert name.endswith("_ARN"), name
            assert isinstance(value, dict) and value.get("Ref", "").endswith("SecretArn"), (name, value)
        assert value not in secret_refs(env), name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_secrets_are_injected_only_by_arn(env):
    declared = load_environment(env).backend.secrets
    secrets = image_config(env)["RuntimeEnvironmentSecrets"]
    assert [s["Name"] for s in secrets] == [secret_variable(name) for name in declared]
    assert [s["Value"] for s in secrets] == secret_refs(env)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_instance_role_reads_the_application_secrets(env):
    """Across every template of the environment, GetSecretValue on an application secret is granted by the
    backend's instance role alone (the secrets carry no resource policy that would widen it)."""
    readers = []
    for name in ["root", *(res["Properties"]["TemplateURL"].removesuffix(".yaml") for res in
                           stack(env, "root")["Resources"].values() if res["Type"] == "AWS::CloudFormation::Stack")]:
        for lid, res in stack(env, name)["Resources"].items():
            for policy in props(res).get("Policies", []):
                for s in statements(policy["PolicyDocument"]):
                    if s["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in as_list(s["Action"]) \
                            and any(r in secret_refs(env) for r in as_list(s["Resource"])):
                        readers.append(f"{name}/{lid}")
            assert res["Type"] != "AWS::SecretsManager::ResourcePolicy", f"{name}/{lid}"
    assert readers == ["backend/InstanceRole"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_parameter_carries_a_secret_value(env):
    for name, param in tmpl(env)["Parameters"].items():
        if SECRET_LOOKING.search(name):
            assert name.endswith("Arn"), name
        assert "NoEcho" not in param and "Default" not in param, name


# ---- roles ----------------------------------------------------------------------------------------

def allow_actions(stmts: list[dict]) -> list[str]:
    return [a for s in stmts if s["Effect"] == "Allow" for a in as_list(s["Action"])]


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("logical_id", ["InstanceRole", "AccessRole", "LogRetentionFunctionRole"])
def test_no_role_allows_a_wildcard_action(env, logical_id):
    actions = allow_actions(policy_statements(role(env, logical_id)))
    assert actions and all("*" not in action for action in actions)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_instance_role_names_only_the_expected_resources(env):
    instance = role(env, "InstanceRole")
    assert props(instance)["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": ["tasks.apprunner.amazonaws.com"]}
    assert props(instance)["ManagedPolicyArns"] == [ref("DataAccessPolicyArn")]
    allowed = {(a, str(r)) for s in policy_statements(instance) if s["Effect"] == "Allow"
               for a in as_list(s["Action"]) for r in as_list(s["Resource"])}
    assert allowed == {
        *(("secretsmanager:GetSecretValue", str(secret)) for secret in secret_refs(env)),
        ("kms:Decrypt", str(ref("DataKeyArn"))),
        ("xray:GetSamplingRules", "*"), ("xray:GetSamplingTargets", "*"),
        ("xray:PutTelemetryRecords", "*"), ("xray:PutTraceSegments", "*"),
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_instance_role_decrypts_only_through_secrets_manager_and_denies_iam(env):
    stmts = policy_statements(role(env, "InstanceRole"))
    kms = next(s for s in stmts if s["Action"] == ["kms:Decrypt"])
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": {
        "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}
    deny = [s for s in stmts if s["Effect"] == "Deny"]
    assert deny and deny[0]["Action"] == ["iam:*"] and deny[0]["Resource"] == ["*"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_access_role_pulls_only_the_backend_repository(env):
    access = role(env, "AccessRole")
    repository = naming.ecr_repository_name(load_environment(env).app_name)
    assert props(access)["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": ["build.apprunner.amazonaws.com"]}
    stmts = {s["Sid"]: s for s in policy_statements(access)}
    assert stmts["PullBackendImage"]["Resource"] == [{"Fn::Sub": (
        f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/{repository}")}]
    assert stmts["RegistryLogin"]["Action"] == ["ecr:GetAuthorizationToken"]
    decrypt = stmts["DecryptImageLayers"]
    assert decrypt["Action"] == ["kms:Decrypt"]
    assert decrypt["Condition"]["ForAnyValue:StringEquals"] == {
        "kms:ResourceAliases": naming.bootstrap_key_alias(load_environment(env).app_name)}
    assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]
    assert "ManagedPolicyArns" not in props(access)


# ---- network, health, encryption, scaling ---------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_connector_uses_only_the_app_subnets_and_connector_sg(env):
    connector_id, connector = one(tmpl(env), "AWS::AppRunner::VpcConnector")
    assert props(connector)["Subnets"] == ref("AppSubnetIds")
    assert props(connector)["SecurityGroups"] == [ref("ConnectorSecurityGroupId")]
    egress = service(env)["NetworkConfiguration"]["EgressConfiguration"]
    assert egress == {"EgressType": "VPC", "VpcConnectorArn": {"Fn::GetAtt": [connector_id, "VpcConnectorArn"]}}
    wired = stack(env, "root")["Resources"]["Backend"]["Properties"]["Parameters"]
    assert wired["AppSubnetIds"] == {"Fn::GetAtt": ["Network", "Outputs.AppSubnetIds"]}
    assert wired["ConnectorSecurityGroupId"] == {"Fn::GetAtt": ["Network", "Outputs.ConnectorSecurityGroupId"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_health_check_is_http_within_app_runner_limits(env):
    health = service(env)["HealthCheckConfiguration"]
    assert health["Protocol"] == "HTTP"
    assert health["Path"] == load_environment(env).backend.health_check_path == contract.HEALTH_PATH
    for field in ("Interval", "Timeout", "HealthyThreshold", "UnhealthyThreshold"):
        assert 1 <= health[field] <= 20, field
    assert health["Timeout"] < health["Interval"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_service_is_encrypted_traced_and_publicly_reachable(env):
    svc = service(env)
    assert svc["EncryptionConfiguration"] == {"KmsKey": ref("DataKeyArn")}
    assert svc["ObservabilityConfiguration"]["ObservabilityEnabled"] is True
    _, observability = one(tmpl(env), "AWS::AppRunner::ObservabilityConfiguration")
    assert props(observability)["TraceConfiguration"] == {"Vendor": "AWSXRAY"}
    assert svc["NetworkConfiguration"]["IngressConfiguration"] == {"IsPubliclyAccessible": True}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_autoscaling_comes_from_config_and_is_unnamed(env):
    config = load_environment(env).backend
    scaling_id, scaling = one(tmpl(env), "AWS::AppRunner::AutoScalingConfiguration")
    p = props(scaling)
    assert (p["MinSize"], p["MaxSize"], p["MaxConcurrency"]) == (
        config.min_instances, config.max_instances, config.max_concurrency)
    assert "AutoScalingConfigurationName" not in p
    assert service(env)["AutoScalingConfigurationArn"] == {"Fn::GetAtt": [scaling_id, "AutoScalingConfigurationArn"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_service_url_output_is_https(env):
    assert tmpl(env)["Outputs"]["ServiceUrl"]["Value"] == {"Fn::Sub": "https://${Service.ServiceUrl}"}
    assert {"ServiceUrl", "ServiceArn", "ServiceId"} <= set(tmpl(env)["Outputs"])


# ---- WAF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_waf_is_associated_with_the_service(env):
    acl_id, _ = one(tmpl(env), "AWS::WAFv2::WebACL")
    _, assoc = one(tmpl(env), "AWS::WAFv2::WebACLAssociation")
    assert props(assoc) == {"ResourceArn": {"Fn::GetAtt": ["Service", "ServiceArn"]},
                            "WebACLArn": {"Fn::GetAtt": [acl_id, "Arn"]}}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_waf_rules_rate_limit_and_managed_groups(env):
    config = load_environment(env)
    _, acl = one(tmpl(env), "AWS::WAFv2::WebACL")
    p = props(acl)
    assert p["Scope"] == "REGIONAL" and p["Name"] == naming.web_acl_name(config)
    assert p["VisibilityConfig"]["MetricName"] == p["Name"]
    rules = {r["Name"]: r for r in p["Rules"]}
    rate = rules[_waf.RATE_LIMIT_RULE]["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == "IP" and rate["Limit"] == config.backend.waf_rate_limit_per_5_min
    assert "Block" in rules[_waf.RATE_LIMIT_RULE]["Action"]
    for group in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        statement = rules[group]["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", group)
        assert rules[group]["OverrideAction"] == {"None": {}}
    assert len({r["Priority"] for r in p["Rules"]}) == len(p["Rules"])
    assert all(r["VisibilityConfig"]["CloudWatchMetricsEnabled"] for r in p["Rules"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_waf_logs_go_to_an_encrypted_group_with_credentials_redacted(env):
    config = load_environment(env)
    group = tmpl(env)["Resources"]["WafLogs"]
    assert props(group)["LogGroupName"] == naming.waf_log_group_name(config)
    assert props(group)["LogGroupName"].startswith("aws-waf-logs-")
    assert props(group)["KmsKeyId"] == ref("OpsKeyArn")
    assert props(group)["RetentionInDays"] == config.logging.retention_days >= 30
    _, logging_config = one(tmpl(env), "AWS::WAFv2::LoggingConfiguration")
    redacted = [f["SingleHeader"]["Name"] for f in props(logging_config)["RedactedFields"]]
    assert {"authorization", "cookie"} <= set(redacted)


# ---- App Runner log groups ------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_app_runner_log_groups_get_retention(env):
    config = load_environment(env)
    _, custom = one(tmpl(env), "AWS::CloudFormation::CustomResource")
    p = props(custom)
    assert p["ServiceName"] == naming.app_runner_service_name(config)
    assert p["ServiceId"] == {"Fn::GetAtt": ["Service", "ServiceId"]}
    assert p["RetentionInDays"] == config.logging.retention_days >= 30
    assert p["KmsKeyArn"] == ref("OpsKeyArn")
    assert p["ServiceToken"] == {"Fn::GetAtt": ["LogRetentionFunction", "Arn"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_log_retention_function_runs_the_handler_file_with_scoped_permissions(env):
    config = load_environment(env)
    function = props(tmpl(env)["Resources"]["LogRetentionFunction"])
    assert function["Code"]["ZipFile"] == Path(handler_module.__file__).read_text(encoding="utf-8")
    assert function["Handler"] == "index.handler"
    scoped = next(s for s in policy_statements(role(env, "LogRetentionFunctionRole"))
                  if s["Sid"] == "ConfigureAppRunnerLogGroups")
    assert scoped["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
                                              f"log-group:/aws/apprunner/{naming.app_runner_service_name(config)}/*"}]
    assert sorted(scoped["Action"]) == ["logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:PutRetentionPolicy"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_log_group_is_encrypted_with_retention(env):
    for lid, group in require(tmpl(env), "AWS::Logs::LogGroup").items():
        assert props(group)["KmsKeyId"] == ref("OpsKeyArn"), lid
        assert props(group)["RetentionInDays"] >= 30, lid


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
