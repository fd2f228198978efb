"""Real-AWS correctness by kind (issue 10): invariants over every rendered template that lint and checkov
cannot see. Each test iterates over all rendered templates (every environment in config/ plus the account-level
templates), never over values of the shipped sample configuration.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cfnlint
import fixture_config
import pytest
from cfn_helpers import ENVIRONMENTS, all_templates, as_list, props, resources_of, stack, statements, template

from generator import contract
from generator.stacks import _waf

SERVICE_DIR = Path(__file__).resolve().parents[1] / "apprunner" / "service"
if str(SERVICE_DIR) not in sys.path:
    sys.path.insert(0, str(SERVICE_DIR))

SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"


@functools.cache
def schema(resource_type: str) -> dict:
    index = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())
    handle = index[resource_type]
    return json.loads((SCHEMAS / "resources" / (handle if handle.endswith(".json") else f"{handle}.json")).read_text())


def create_only(resource_type: str) -> set[str]:
    """Top-level create-only properties of a resource type (cfn-lint's copy of the CloudFormation schema)."""
    if resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource":
        return set()
    return {p.split("/")[2] for p in schema(resource_type).get("createOnlyProperties", [])}


def physical_name_properties(resource_type: str) -> set[str]:
    """Create-only properties that name the resource (ServiceName, BackupVaultName, Name, ...)."""
    return {p for p in create_only(resource_type) if p.endswith(("Name", "Identifier"))}


def every_resource() -> Iterator[tuple[str, str, dict]]:
    templates = all_templates()
    assert any(path.startswith(f"{env}/") for env in ENVIRONMENTS for path in templates)
    for path, tmpl in sorted(templates.items()):
        for logical_id, resource in tmpl.get("Resources", {}).items():
            yield path, logical_id, resource


def walk(node, path: str = "") -> Iterator[tuple[str, object]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


# ---- 1. a retry after a failed first create --------------------------------------------------------

def test_no_resource_combines_plain_retain_with_a_fixed_physical_name():
    offenders = [f"{path}:{lid}" for path, lid, res in every_resource()
                 if res.get("DeletionPolicy") == "Retain" and physical_name_properties(res["Type"]) & set(props(res))]
    assert not offenders, f"Retain + fixed name collides on retry after a failed create: {offenders}"


def test_update_replace_policy_never_uses_the_deletion_only_value():
    """UpdateReplacePolicy accepts Delete | Retain | Snapshot only."""
    for path, lid, res in every_resource():
        assert res.get("UpdateReplacePolicy", "Delete") in ("Delete", "Retain", "Snapshot"), f"{path}:{lid}"


# ---- 2. the edge refuses what the application accepts ----------------------------------------------

def web_acls() -> list[tuple[str, dict]]:
    found = [(env, acl) for env in ENVIRONMENTS for acl in resources_of(stack(env, "backend"),
                                                                        "AWS::WAFv2::WebACL").values()]
    assert found
    return found


def protected_resource(env: str) -> str:
    """What the environment's web ACL protects, from its association (App Runner service or the Express ALB)."""
    (association,) = resources_of(stack(env, "backend"), "AWS::WAFv2::WebACLAssociation").values()
    arn = json.dumps(props(association)["ResourceArn"])
    return _waf.LOAD_BALANCER if "LoadBalancerArn" in arn else _waf.APP_RUNNER


def waf_blocks_body(acl: dict, body_bytes: int, protects: str) -> bool:
    """What the web ACL's body rules do with a body of `body_bytes` (AWS WAF's documented semantics: the resource
    forwards up to the inspection limit, fixed at 8 KB behind a load balancer; a larger body is oversize and gets
    the rule's OversizeHandling)."""
    if protects in _waf.FIXED_INSPECTION_BYTES:
        assert "AssociationConfig" not in props(acl), "a load balancer takes no AssociationConfig"
        inspected = _waf.FIXED_INSPECTION_BYTES[protects]
    else:
        limits = props(acl)["AssociationConfig"]["RequestBody"]
        inspected = _waf.BODY_INSPECTION_LIMITS[limits[protects]["DefaultSizeInspectionLimit"]]
    for rule in props(acl)["Rules"]:
        size = rule["Statement"].get("SizeConstraintStatement")
        if not size or "Body" not in size["FieldToMatch"] or "Block" not in rule.get("Action", {}):
            continue
        assert size["ComparisonOperator"] == "GT"
        oversize = size["FieldToMatch"]["Body"]["OversizeHandling"]
        if body_bytes > inspected:
            if oversize == "MATCH":
                return True
        elif body_bytes > size["Size"]:
            return True
    return False


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_waf_body_rule_equals_the_contract_limit_with_explicit_oversize_handling(env):
    protects = protected_resource(env)
    for _, acl in [(e, a) for e, a in web_acls() if e == env]:
        rules = {r["Name"]: r for r in props(acl)["Rules"]}
        common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
        assert {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}} in common["RuleActionOverrides"]
        # Boundary on the edge side: the edge never refuses a body the service accepts (exactly the limit, or
        # 8 KB + 1, beyond a load balancer's fixed inspection)...
        assert not waf_blocks_body(acl, contract.MAX_REQUEST_BODY_BYTES, protects)
        assert not waf_blocks_body(acl, 8 * 1024 + 1, protects)
        if protects == _waf.APP_RUNNER:   # ...and where WAF can see that far, one byte more is its 413
            size = rules[_waf.BODY_SIZE_RULE]["Statement"]["SizeConstraintStatement"]
            assert size["Size"] == contract.MAX_REQUEST_BODY_BYTES
            assert size["FieldToMatch"]["Body"]["OversizeHandling"] == "MATCH"
            assert rules[_waf.BODY_SIZE_RULE]["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
            assert waf_blocks_body(acl, contract.MAX_REQUEST_BODY_BYTES + 1, protects)
        else:   # behind a load balancer one byte more is the service's own 413 (next test)
            assert _waf.BODY_SIZE_RULE not in rules


def test_waf_on_a_load_balancer_has_no_rule_that_blocks_bodies_the_service_accepts():
    """The instance that slipped in with ECS Express: a MATCH-on-oversize size rule behind an ALB (8 KB
    inspection) would answer 413 to every body between 8 KB and the service's 64 KiB."""
    acl = json.loads(json.dumps(_waf.web_acl(fixture_config.environment("dev"), protects=_waf.LOAD_BALANCER)
                                .to_dict()))
    for body in (8 * 1024 + 1, 32 * 1024, contract.MAX_REQUEST_BODY_BYTES):
        assert not waf_blocks_body(acl, body, _waf.LOAD_BALANCER), body
    with pytest.raises(ValueError, match="protects"):
        _waf.web_acl(fixture_config.environment("dev"), protects="API_GATEWAY")


def test_service_limit_is_the_contract_limit():
    from adagency_backend import middleware
    assert middleware.MAX_BODY_BYTES == contract.MAX_REQUEST_BODY_BYTES


@pytest.mark.parametrize("chunked", [False, True])
def test_service_accepts_exactly_the_limit_and_refuses_one_byte_more(chunked):
    from adagency_backend.middleware import RequestGuardMiddleware
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"received": len(await request.body())})

    app = RequestGuardMiddleware(Starlette(routes=[Route("/events", echo, methods=["POST"])]))
    client = TestClient(app)

    def post(size: int):
        body = b"x" * size
        headers = {"content-type": "application/json"}
        content = iter([body[: size // 2], body[size // 2:]]) if chunked else body
        return client.post("/events", content=content, headers=headers)

    limit = contract.MAX_REQUEST_BODY_BYTES
    accepted = post(limit)
    assert (accepted.status_code, accepted.json()) == (200, {"received": limit})
    assert post(limit + 1).status_code == 413


def test_inspection_limit_is_the_smallest_that_covers_the_limit():
    assert _waf.body_inspection_limit(16 * 1024) == "KB_16"
    assert _waf.body_inspection_limit(16 * 1024 + 1) == "KB_32"
    assert _waf.body_inspection_limit(64 * 1024) == "KB_64"
    with pytest.raises(ValueError, match="64 KiB"):
        _waf.body_inspection_limit(64 * 1024 + 1)


# ---- 3. features nothing feeds ------------------------------------------------------------------------

def test_no_xray_permissions_unless_a_service_traces():
    tracing = any(res["Type"] == "AWS::AppRunner::ObservabilityConfiguration" for _, _, res in every_resource())
    granted = [f"{path}:{lid}" for path, lid, res in every_resource() if res["Type"] in ("AWS::IAM::Role",
                                                                                          "AWS::IAM::Policy",
                                                                                          "AWS::IAM::ManagedPolicy")
               and "xray:" in json.dumps(props(res).get("Policies", props(res).get("PolicyDocument", {})))]
    assert tracing or not granted, f"X-Ray permissions with nothing that emits traces: {granted}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_app_runner_tracing_is_off(env):
    for service in resources_of(stack(env, "backend"), "AWS::AppRunner::Service").values():
        assert props(service)["ObservabilityConfiguration"] == {"ObservabilityEnabled": False}


# Which resource type publishes each namespace an alarm may watch (AWS namespaces, and the service's own EMF one).
PUBLISHERS = {
    "AWS/AppRunner": "AWS::AppRunner::Service",
    contract.METRICS_NAMESPACE: "AWS::AppRunner::Service",  # EMF lines of the reference service
    "AWS/RDS": "AWS::RDS::DBCluster",
    "AWS/AmplifyHosting": "AWS::Amplify::App",
    "AWS/NATGateway": "AWS::EC2::NatGateway",
    "AWS/WAFV2": "AWS::WAFv2::WebACL",
    "AWS/Backup": "AWS::Backup::BackupPlan",
    "AWS/ApplicationELB": "AWS::ECS::ExpressGatewayService",  # the ALB ECS Express Mode provisions
    "AWS/ECS": ["AWS::ECS::ExpressGatewayService", "AWS::ECS::Service"],
    "ECS/ContainerInsights": ["AWS::ECS::ExpressGatewayService", "AWS::ECS::Service"],
    "AWS/SQS": "AWS::SQS::Queue",
}


def alarm_metrics(alarm: dict) -> list[dict]:
    p = props(alarm)
    if "MetricName" in p:
        return [{"Namespace": p["Namespace"], "MetricName": p["MetricName"], "Dimensions": p.get("Dimensions", [])}]
    return [q["MetricStat"]["Metric"] for q in p.get("Metrics", []) if "MetricStat" in q]


def environment_resource_types(env: str) -> set[str]:
    return {res["Type"] for path, tmpl in all_templates().items() if path.startswith(f"{env}/")
            for res in tmpl.get("Resources", {}).values()}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_alarm_watches_a_metric_that_a_resource_of_the_environment_publishes(env):
    types = environment_resource_types(env)
    alarms = resources_of(stack(env, "monitoring"), "AWS::CloudWatch::Alarm")
    assert alarms
    for lid, alarm in alarms.items():
        for metric in alarm_metrics(alarm):
            publishers = as_list(PUBLISHERS.get(metric["Namespace"], []))
            assert set(publishers) & types, f"{env}:{lid} watches {metric['Namespace']}"


def test_the_service_emits_the_metric_the_alarm_watches():
    from adagency_backend import metrics
    assert (metrics.NAMESPACE, metrics.LATENCY_METRIC, metrics.DIMENSION) == (
        contract.METRICS_NAMESPACE, contract.LATENCY_METRIC, contract.METRICS_DIMENSION)


# ---- 10. an alarm that the product's own design keeps firing -----------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_alarm_watches_app_runner_latency_which_includes_sse_streams(env):
    for lid, alarm in resources_of(stack(env, "monitoring"), "AWS::CloudWatch::Alarm").items():
        for metric in alarm_metrics(alarm):
            assert (metric["Namespace"], metric["MetricName"]) != ("AWS/AppRunner", "RequestLatency"), lid


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_latency_alarm_watches_the_non_streaming_metric_of_this_environment(env):
    if "AWS::AppRunner::Service" not in environment_resource_types(env):
        # ECS Express alarms on the ALB's TargetResponseTime: time to response headers, which SSE streams
        # do not inflate (docs/stack-monitoring.md); the no-RequestLatency test above still applies.
        return
    watched = [m for a in resources_of(stack(env, "monitoring"), "AWS::CloudWatch::Alarm").values()
               for m in alarm_metrics(a) if m["MetricName"] == contract.LATENCY_METRIC]
    assert len(watched) == 1
    assert watched[0]["Namespace"] == contract.METRICS_NAMESPACE
    assert watched[0]["Dimensions"] == [{"Name": contract.METRICS_DIMENSION, "Value": env}]
    dashboard = json.dumps(next(iter(resources_of(stack(env, "monitoring"), "AWS::CloudWatch::Dashboard").values())))
    assert "RequestLatency" in dashboard and contract.LATENCY_METRIC in dashboard  # stream duration still shown


def test_service_emits_emf_for_plain_requests_and_not_for_streams(capsys):
    from adagency_backend.middleware import RequestContextMiddleware
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def plain(_request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def stream(_request) -> StreamingResponse:
        async def events():
            yield b"data: 1\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    app = RequestContextMiddleware(Starlette(routes=[Route("/plain", plain), Route("/stream", stream)]),
                                   metrics_environment="someenv")
    client = TestClient(app)
    capsys.readouterr()
    client.get("/plain")
    client.get("/stream")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(lines) == 1, lines
    emf = lines[0]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == contract.METRICS_NAMESPACE
    assert directive["Dimensions"] == [[contract.METRICS_DIMENSION]] and emf[contract.METRICS_DIMENSION] == "someenv"
    assert directive["Metrics"] == [{"Name": contract.LATENCY_METRIC, "Unit": "Milliseconds"}]
    assert isinstance(emf[contract.LATENCY_METRIC], (int, float)) and isinstance(emf["_aws"]["Timestamp"], int)


# ---- 4. rendered values that AWS normalises away ------------------------------------------------------

def test_no_property_renders_as_an_empty_string():
    empty = [f"{path}:{lid}{where}" for path, lid, res in every_resource()
             for where, value in walk(props(res)) if value == ""]
    assert not empty, f"empty strings drift forever (AWS stores no value): {empty}"


def test_no_empty_string_anywhere_in_a_rendered_template():
    """Outputs, parameters and metadata too (an output of "" is as useless as a property of "")."""
    empty = [f"{path}{where}" for path, tmpl in sorted(all_templates().items()) for where, value in walk(tmpl)
             if value == "" and not where.endswith("Fn::Join[0]")]  # a Join delimiter is no stored value
    assert not empty, empty


# ---- 5. the pipeline's CloudFormation deploy role -----------------------------------------------------

ROLE_WRITES = {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary",
               "iam:DetachRolePolicy", "iam:DeleteRolePolicy"}


def app_name() -> str:
    from generator.config import load_account
    return load_account().app_name


def deploy_role_statements() -> list[dict]:
    pipeline = template("pipeline.yaml")["Resources"]
    found = []
    for lid, res in pipeline.items():
        p = props(res)
        if lid == "DeployRole":
            found += [st for policy in p["Policies"] for st in statements(policy["PolicyDocument"])]
        elif res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") and {"Ref": "DeployRole"} in p.get(
                "Roles", []):
            found += statements(p["PolicyDocument"])
    assert found
    return found


def test_every_environment_role_carries_the_kits_permissions_boundary():
    from generator import deploy_scopes
    expected = json.loads(json.dumps(deploy_scopes.boundary_arn(app_name()).to_dict()))
    roles = [(path, lid, res) for path, lid, res in every_resource()
             if res["Type"] == "AWS::IAM::Role" and path.split("/")[0] in ENVIRONMENTS]
    assert roles
    for path, lid, res in roles:
        assert props(res).get("PermissionsBoundary") == expected, f"{path}:{lid}"


def test_deploy_role_creates_and_changes_roles_only_with_the_boundary():
    from generator import deploy_scopes
    boundary = json.loads(json.dumps(deploy_scopes.boundary_arn(app_name()).to_dict()))
    writes = 0
    for st in deploy_role_statements():
        if st["Effect"] != "Allow":
            continue
        actions = set(as_list(st["Action"]))
        assert not actions & deploy_scopes.NEVER_GRANTED, st.get("Sid")
        if actions & ROLE_WRITES:
            writes += 1
            assert st["Condition"]["StringEquals"]["iam:PermissionsBoundary"] == boundary, st.get("Sid")
    assert writes, "the deploy role cannot create roles at all"


def test_deploy_role_reads_secret_values_only_of_this_apps_secrets():
    reads = [st for st in deploy_role_statements() if st["Effect"] == "Allow"
             and "secretsmanager:GetSecretValue" in as_list(st["Action"])]
    assert reads
    for st in reads:
        for resource in as_list(st["Resource"]):
            assert resource != "*", st.get("Sid")
            arn = resource["Fn::Sub"] if isinstance(resource, dict) else resource
            arn = arn[0] if isinstance(arn, list) else arn
            if arn.endswith(":secret:*"):
                assert st["Condition"]["StringEquals"]["aws:ResourceTag/Application"] == app_name(), st.get("Sid")


def test_the_boundary_cannot_be_changed_or_removed_and_grants_no_iam():
    """No IAM but service-linked roles of ECS Express Mode's managed infrastructure (ELB, ECS auto scaling), only
    for those service names: its infrastructure role creates them in an account that has none yet."""
    from generator import deploy_scopes
    policies = [props(res) for res in resources_of(template("bootstrap.yaml"), "AWS::IAM::ManagedPolicy").values()
                if props(res).get("ManagedPolicyName") == deploy_scopes.boundary_name(app_name())]
    assert len(policies) == 1
    found = statements(policies[0]["PolicyDocument"])
    allowed = {a for st in found if st["Effect"] == "Allow" for a in as_list(st["Action"])}
    assert not any((a.startswith("iam:") and a != "iam:CreateServiceLinkedRole") or a == "*" for a in allowed)
    (linked,) = [st for st in found
                 if st["Effect"] == "Allow" and "iam:CreateServiceLinkedRole" in as_list(st["Action"])]
    assert as_list(linked["Action"]) == ["iam:CreateServiceLinkedRole"]
    assert sorted(linked["Condition"]["StringEquals"]["iam:AWSServiceName"]) == [
        "ecs.application-autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com"]
    assert as_list(linked["Resource"])[0]["Fn::Sub"].endswith(":role/aws-service-role/*")
    denied = {a: st["Resource"] for st in found if st["Effect"] == "Deny" for a in as_list(st["Action"])}
    for action in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy",
                   "iam:DeleteRolePermissionsBoundary", "iam:CreateRole", "iam:PutRolePolicy",
                   "iam:AttachRolePolicy", "iam:PassRole"):
        assert action in denied, action


def test_the_boundary_allows_everything_the_environment_roles_are_granted():
    from generator import deploy_scopes
    for path, lid, res in every_resource():
        if path.split("/")[0] not in ENVIRONMENTS or res["Type"] not in ("AWS::IAM::Role", "AWS::IAM::Policy",
                                                                          "AWS::IAM::ManagedPolicy"):
            continue
        p = props(res)
        documents = [pol["PolicyDocument"] for pol in p.get("Policies", [])] + (
            [p["PolicyDocument"]] if "PolicyDocument" in p else [])
        for document in documents:
            for st in statements(document):
                if st["Effect"] == "Allow":
                    for action in as_list(st["Action"]):
                        assert action.split(":")[0] in deploy_scopes.BOUNDARY_SERVICES, f"{path}:{lid}: {action}"


def test_every_aws_managed_policy_of_an_environment_role_is_known_and_inside_the_boundary():
    from generator import deploy_scopes
    attached = 0
    for path, lid, res in every_resource():
        if path.split("/")[0] not in ENVIRONMENTS or res["Type"] != "AWS::IAM::Role":
            continue
        for arn in props(res).get("ManagedPolicyArns", []):
            text = arn.get("Fn::Sub") if isinstance(arn, dict) else arn
            if isinstance(text, str) and ":iam::aws:policy/" in text:
                attached += 1
                name = text.split(":iam::aws:policy/", 1)[1]
                assert name in deploy_scopes.AWS_MANAGED_POLICY_SERVICES, f"{path}:{lid}: {name}"
                assert set(deploy_scopes.AWS_MANAGED_POLICY_SERVICES[name]) <= set(deploy_scopes.BOUNDARY_SERVICES)
    assert attached or not deploy_scopes.AWS_MANAGED_POLICY_SERVICES


def test_deploy_role_may_create_every_log_group_the_environments_name():
    """Scoping log-group actions must never lock the deploy role out of a group a template names."""
    import fnmatch
    import re
    creates = [st for st in deploy_role_statements() if st["Effect"] == "Allow"
               and "logs:CreateLogGroup" in as_list(st["Action"])]
    assert creates
    patterns = []
    for st in creates:
        for resource in as_list(st["Resource"]):
            text = resource if isinstance(resource, str) else resource["Fn::Sub"]
            patterns.append("*" if text == "*" else text.split(":log-group:", 1)[1])
    for path, lid, res in every_resource():
        if path.split("/")[0] not in ENVIRONMENTS or res["Type"] != "AWS::Logs::LogGroup":
            continue
        name = props(res).get("LogGroupName")
        if name is None:
            continue  # generated from the stack name: covered by the <app>-<env>-* pattern
        if isinstance(name, dict):
            name = re.sub(r"\$\{[^}]*\}", "x", name["Fn::Sub"])
        assert any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns), f"{path}:{lid}: {name}"


# type -> the property path of its name, for every type the deploy role reaches only by `<app>-<env>` prefix.
PREFIX_SCOPED_NAMES = {"AWS::SNS::Topic": ("TopicName",), "AWS::Lambda::Function": ("FunctionName",),
                       "AWS::S3::Bucket": ("BucketName",), "AWS::CloudWatch::Alarm": ("AlarmName",),
                       "AWS::CloudWatch::Dashboard": ("DashboardName",), "AWS::SQS::Queue": ("QueueName",),
                       "AWS::ECS::Cluster": ("ClusterName",), "AWS::WAFv2::WebACL": ("Name",),
                       "AWS::Events::Rule": ("Name",), "AWS::Budgets::Budget": ("Budget", "BudgetName"),
                       "AWS::Backup::BackupVault": ("BackupVaultName",),
                       "AWS::RDS::DBCluster": ("DBClusterIdentifier",),
                       "AWS::RDS::DBSubnetGroup": ("DBSubnetGroupName",),
                       "AWS::RDS::DBClusterParameterGroup": ("DBClusterParameterGroupName",)}


def test_resources_the_deploy_role_reaches_by_prefix_are_named_by_the_prefix_or_by_cloudformation():
    """The deploy role reaches these types only under `<app>-<env>` (generated names start with the stack name)."""
    from generator import naming
    from generator.config import load_environment
    for env in ENVIRONMENTS:
        prefix = naming.root_stack_name(load_environment(env))
        for path, lid, res in every_resource():
            if path.split("/")[0] != env or res["Type"] not in PREFIX_SCOPED_NAMES:
                continue
            name = props(res)
            for key in PREFIX_SCOPED_NAMES[res["Type"]]:
                name = name.get(key) if isinstance(name, dict) else None
            assert name is None or name == prefix or (isinstance(name, str) and name.startswith(f"{prefix}-")), (
                f"{path}:{lid}: {name}")


def test_every_scoped_service_type_is_checked_for_its_names():
    """A service scoped by prefix in deploy_scopes has its named types in the naming test above (log groups and
    secrets have tests of their own patterns)."""
    from generator import deploy_scopes
    services = {t.split("::")[1].lower() for t in PREFIX_SCOPED_NAMES}
    assert set(deploy_scopes.SCOPED_RESOURCE_TYPES) - {"logs", "secretsmanager"} <= services


def secret_scopes() -> list[str]:
    """Name patterns (after `secret:`) of every deploy-role statement on Secrets Manager secrets."""
    found = []
    for st in deploy_role_statements():
        actions = [a for a in as_list(st["Action"]) if a.startswith("secretsmanager:")
                   and a != "secretsmanager:GetRandomPassword"]  # no resource type: generates a string
        if st["Effect"] == "Allow" and actions:
            for resource in as_list(st["Resource"]):
                text = resource if isinstance(resource, str) else resource["Fn::Sub"]
                found.append("*" if text == "*" else text.split(":secret:", 1)[1])
    return found


def test_deploy_role_reaches_every_secret_the_environments_create_and_no_other_name():
    """Each secret of the environments, as AWS names it, matches a pattern; no secret action is on "*"
    (tagging on "*" would let the role tag any secret with this app's Application tag and then read it)."""
    import fnmatch
    patterns = secret_scopes()
    assert patterns and "*" not in patterns and not any(p.startswith("*") for p in patterns), patterns
    generated = []
    for path, lid, res in every_resource():
        if path.split("/")[0] not in ENVIRONMENTS:
            continue
        if res["Type"] == "AWS::SecretsManager::Secret":
            name = props(res).get("Name")
            generated.append(f"{lid}-AbCdEf123456-Zy9x8W" if name is None else f"{name}-Zy9x8W")
        if res["Type"] == "AWS::RDS::DBCluster" and props(res).get("ManageMasterUserPassword"):
            generated.append("rds!cluster-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-Zy9x8W")
    assert generated
    for name in generated:
        assert any(fnmatch.fnmatchcase(name, p.replace("?", "[!/]")) for p in patterns), name
    assert not any(fnmatch.fnmatchcase("prod/other-team/api-key-Zy9x8W", p) for p in patterns)


def test_deploy_role_may_never_retag_a_secret_of_another_app():
    """The secret name patterns also match another app of this kit and every RDS-managed secret, so tagging a
    secret that carries another Application tag is denied (else the role could re-tag it and read it)."""
    denies = [st for st in deploy_role_statements() if st["Effect"] == "Deny"
              and {"secretsmanager:TagResource", "secretsmanager:UntagResource"} <= set(as_list(st["Action"]))]
    assert len(denies) == 1
    condition = denies[0]["Condition"]
    assert condition["StringNotEquals"] == {"aws:ResourceTag/Application": app_name()}
    assert condition["Null"] == {"aws:ResourceTag/Application": "false"}
    (resource,) = as_list(denies[0]["Resource"])
    assert resource["Fn::Sub"].endswith(":secret:*")


def test_no_action_is_on_star_when_every_resource_it_accepts_is_scoped():
    """The scoping rule, over the rendered role: an action whose every resource type the kit can name is never
    granted on "*" (deploy_scopes.SCOPED_RESOURCE_TYPES)."""
    from generator import deploy_scopes
    on_star = {a for st in deploy_role_statements() if st["Effect"] == "Allow" and as_list(st["Resource"]) == ["*"]
               for a in as_list(st["Action"])}
    assert not [a for a in on_star if deploy_scopes.scope_of(a) is not None], sorted(
        a for a in on_star if deploy_scopes.scope_of(a) is not None)
    for action in ("sqs:SetQueueAttributes", "ecs:UpdateService", "wafv2:PutLoggingConfiguration",
                   "events:PutRule", "budgets:ModifyBudget", "backup:DeleteBackupVault", "rds:ModifyDBSubnetGroup",
                   "secretsmanager:TagResource"):
        assert deploy_scopes.scope_of(action) is not None, action
    for action in ("ec2:CreateVpc", "kms:CreateKey", "rds:CreateDBInstance", "ecs:RegisterTaskDefinition",
                   "wafv2:CreateWebACL", "ecs:CreateExpressGatewayService"):
        assert deploy_scopes.scope_of(action) is None, action


def test_deploy_role_policies_fit_iam_size_limits():
    """Inline policies of a role share 10,240 characters, a managed policy holds 6,144, a role takes 10
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html)."""
    from generator import deploy_permissions as dp
    pipeline = template("pipeline.yaml")["Resources"]
    inline = sum(dp.policy_chars(policy["PolicyDocument"]) for policy in props(pipeline["DeployRole"])["Policies"])
    inline += sum(dp.policy_chars(props(res)["PolicyDocument"]) for res in pipeline.values()
                  if res["Type"] == "AWS::IAM::Policy" and {"Ref": "DeployRole"} in props(res)["Roles"])
    managed = [props(res) for res in pipeline.values()
               if res["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": "DeployRole"} in props(res)["Roles"]]
    assert inline <= dp.ROLE_INLINE_POLICIES_MAX_CHARS
    assert all(dp.policy_chars(m["PolicyDocument"]) <= dp.MANAGED_POLICY_MAX_CHARS for m in managed)
    assert len(managed) <= dp.MAX_MANAGED_POLICIES_PER_ROLE


def test_every_optional_feature_is_listed_by_its_types_and_has_a_source():
    from generator import deploy_permissions, deploy_scopes
    for feature in deploy_scopes.OPTIONAL_FEATURES:
        assert feature.source.strip()
        for type_ in feature.types:
            assert feature.actions <= deploy_permissions.handler_permissions(type_), (type_, sorted(
                feature.actions - deploy_permissions.handler_permissions(type_)))


def test_the_deploy_role_lacks_the_actions_of_features_no_environment_uses():
    from generator import deploy_scopes
    templates = [tmpl for path, tmpl in all_templates().items() if path.split("/")[0] in ENVIRONMENTS]
    unused = deploy_scopes.unused_feature_actions(templates)
    assert {"appsync:AssociateWebACL", "s3tables:CreateTable"} <= unused
    granted = {a for st in deploy_role_statements() if st["Effect"] == "Allow" for a in as_list(st["Action"])}
    assert not unused & granted, sorted(unused & granted)


@pytest.mark.parametrize("resource_type, properties, kept", [
    ("AWS::S3::Bucket", {"MetadataTableConfiguration": {}}, "s3tables:CreateTable"),
    ("AWS::Lambda::Function", {"FileSystemConfigs": []}, "elasticfilesystem:DescribeMountTargets"),
    ("AWS::Amplify::App", {"Repository": "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/x"},
     "codecommit:GetRepository"),
    ("AWS::EC2::VPCEndpoint", {"ServiceNetworkArn": "arn"}, "vpc-lattice:CreateServiceNetworkVpcEndpointAssociation"),
    ("AWS::WAFv2::WebACLAssociation", {"ResourceArn": {"Ref": "GraphQlApi"}}, "appsync:AssociateWebACL"),
    ("AWS::WAFv2::WebACLAssociation", {"ResourceArn": "arn:aws:cognito-idp:x"}, "cognito-idp:AssociateWebACL"),
])
def test_a_template_that_turns_a_feature_on_keeps_its_actions(resource_type, properties, kept):
    from generator import deploy_scopes
    templates = [tmpl for path, tmpl in all_templates().items() if path.split("/")[0] in ENVIRONMENTS]
    assert kept in deploy_scopes.unused_feature_actions(templates)
    extra = {"Resources": {"Extra": {"Type": resource_type, "Properties": properties}}}
    assert kept not in deploy_scopes.unused_feature_actions([*templates, extra])


def test_the_kits_web_acl_associations_target_app_runner_services_or_load_balancers():
    from generator import deploy_scopes
    targets = {props(res)["ResourceArn"]["Fn::GetAtt"][1] for path, _, res in every_resource()
               if res["Type"] == "AWS::WAFv2::WebACLAssociation"}
    expected = {"ServiceArn", "ECSManagedResourceArns.IngressPath.LoadBalancerArn"}
    assert expected == deploy_scopes.WAF_ASSOCIATION_TARGETS
    assert targets and targets <= deploy_scopes.WAF_ASSOCIATION_TARGETS


def test_every_supplement_is_a_real_action_with_a_source_and_is_granted():
    from generator import deploy_permissions, deploy_scopes
    granted = {a for st in deploy_role_statements() if st["Effect"] == "Allow" for a in as_list(st["Action"])}
    types = {res["Type"] for path, _, res in every_resource() if path.split("/")[0] in ENVIRONMENTS}
    for type_, entries in deploy_scopes.SUPPLEMENTS.items():
        for action, source in entries:
            assert deploy_permissions.is_iam_action(action) and source.strip(), (type_, action)
            if type_ in types:
                assert action in granted, (type_, action)


# ---- 6. approval integrity --------------------------------------------------------------------------

def pipeline_stages() -> list[dict]:
    (pipeline,) = resources_of(template("pipeline.yaml"), "AWS::CodePipeline::Pipeline").values()
    return props(pipeline)["Stages"]


def test_every_executed_change_set_is_the_one_created_before_the_approval_in_its_stage():
    executes = 0
    for stage in pipeline_stages():
        actions = stage["Actions"]
        for execute in [a for a in actions if a["Configuration"].get("ActionMode") == "CHANGE_SET_EXECUTE"]:
            executes += 1
            key = (execute["Configuration"]["StackName"], execute["Configuration"]["ChangeSetName"])
            creates = [a for a in actions if a["Configuration"].get("ActionMode") == "CHANGE_SET_REPLACE"
                       and (a["Configuration"]["StackName"], a["Configuration"]["ChangeSetName"]) == key]
            approvals = [a for a in actions if a["ActionTypeId"]["Category"] == "Approval"]
            assert len(creates) == 1 and approvals, stage["Name"]
            (create,) = creates
            assert any(create["RunOrder"] < a["RunOrder"] < execute["RunOrder"] for a in approvals), stage["Name"]
            assert stage.get("OnFailure") == {"Result": "ROLLBACK"}
    assert executes, "no change set is executed: the gated environment has no approval"
    # Nowhere else is that change set (re-)created: another stage would replace what the approver reviewed.
    replaces = [(a["Configuration"]["StackName"], a["Configuration"]["ChangeSetName"])
                for st in pipeline_stages() for a in st["Actions"]
                if a["Configuration"].get("ActionMode") == "CHANGE_SET_REPLACE"]
    assert len(replaces) == len(set(replaces))


# ---- 7. retention shorter than the rollback window ---------------------------------------------------

def test_artifacts_outlive_the_rollback_window():
    from generator.config import load_account
    window = load_account().rollback_window_days
    (bucket,) = [b for lid, b in resources_of(template("bootstrap.yaml"), "AWS::S3::Bucket").items()
                 if lid == "ArtifactBucket"]
    for rule in props(bucket)["LifecycleConfiguration"]["Rules"]:
        if "ExpirationInDays" in rule:
            assert rule["ExpirationInDays"] >= window
        if "NoncurrentVersionExpiration" in rule:
            assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] >= window


def test_artifact_expiration_shorter_than_the_rollback_window_is_refused(tmp_path):
    from generator.config import ConfigError, load_account
    path = tmp_path / "account.toml"
    path.write_text('app_name = "acme"\nsource_repository = "org/repo"\nrollback_window_days = 200\n'
                    "artifact_expiration_days = 199\n")
    with pytest.raises(ConfigError) as error:
        load_account(path)
    assert "artifact_expiration_days" in str(error.value) and "rollback_window_days (200)" in str(error.value)
    path.write_text('app_name = "acme"\nsource_repository = "org/repo"\nrollback_window_days = 200\n'
                    "artifact_expiration_days = 200\n")
    assert load_account(path).artifact_expiration_days == 200


# ---- 8. account-wide things created per environment -------------------------------------------------

def test_no_environment_has_its_own_trail_unless_it_opts_in():
    from generator.config import load_environment
    for env in ENVIRONMENTS:
        trails = [t for p, tmpl in all_templates().items() if p.startswith(f"{env}/")
                  for t in resources_of(tmpl, "AWS::CloudTrail::Trail")]
        assert len(trails) == (1 if load_environment(env).security.cloudtrail else 0), env


def test_the_account_level_trail_is_the_default_and_lives_in_bootstrap():
    from generator.config import AccountConfig, SecurityConfig, load_account
    assert AccountConfig.model_fields["cloudtrail"].default is True
    assert SecurityConfig.model_fields["cloudtrail"].default is False
    trails = resources_of(template("bootstrap.yaml"), "AWS::CloudTrail::Trail")
    assert len(trails) == (1 if load_account().cloudtrail else 0)
    for trail in trails.values():
        p = props(trail)
        assert (p["IsMultiRegionTrail"], p["IncludeGlobalServiceEvents"], p["EnableLogFileValidation"]) == (
            True, True, True)
        assert p["KMSKeyId"] == {"Fn::GetAtt": ["TrailKey", "Arn"]}


# ---- 9. create-only properties that a routine change would hit ----------------------------------------

def test_no_resource_with_create_only_tags_has_a_fixed_name():
    """Stack tags propagate to every resource; when Tags are create-only a tag change replaces the resource,
    which CloudFormation cannot do while the name is fixed."""
    offenders = [f"{path}:{lid}:{sorted(physical_name_properties(res['Type']) & set(props(res)))}"
                 for path, lid, res in every_resource()
                 if "Tags" in create_only(res["Type"]) and physical_name_properties(res["Type"]) & set(props(res))]
    assert not offenders, offenders


@pytest.mark.parametrize("resource_type", ["AWS::AppRunner::Service", "AWS::ECS::ExpressGatewayService"])
def test_the_create_only_check_knows_both_backend_services(resource_type):
    """Both backend platforms have create-only Tags and a name property, so the check above covers them."""
    assert "Tags" in create_only(resource_type)
    assert "ServiceName" in physical_name_properties(resource_type)

