"""Invariants of the frontend stacks (Amplify app; branch, custom domain, first build) and the
first-build handler, per environment."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import boto3
import fixture_config
import pytest
import yaml
from botocore.stub import Stubber
from cfn_helpers import ENVIRONMENTS, as_list, one, props, resources_of, stack, statements

from generator.cfn import to_data
from generator.config import REPO_ROOT, load_environment
from generator.stacks import _amplify, frontend, frontend_branch
from generator.stacks.handlers import amplify_start_job as handler

DYNAMIC_REFERENCE = re.compile(r"^\{\{resolve:secretsmanager:[^}]+\}\}$")
OPS_KEY = {"Ref": "OpsKeyArn"}


def cfg(env: str):
    return load_environment(env)


def app_tmpl(env: str) -> dict:
    return stack(env, "frontend")


def branch_tmpl(env: str) -> dict:
    return stack(env, "frontend_branch")


def app(env: str) -> dict:
    return props(one(app_tmpl(env), "AWS::Amplify::App")[1])


def branch(env: str) -> dict:
    return props(one(branch_tmpl(env), "AWS::Amplify::Branch")[1])


def headers(env: str) -> dict[str, str]:
    text = app(env)["CustomHeaders"]["Fn::Sub"]
    rules = yaml.safe_load(text)["customHeaders"]
    assert [r["pattern"] for r in rules] == ["**"]
    return {h["key"]: h["value"] for h in rules[0]["headers"]}


def csp(env: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in headers(env)["Content-Security-Policy"].split(";") if d.strip()}


def role_statements(tmpl: dict, logical_id: str) -> list[dict]:
    role = props(tmpl["Resources"][logical_id])
    return [s for p in role.get("Policies", []) for s in statements(p["PolicyDocument"])]


# ---- Amplify app ----------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
class TestApp:
    def test_git_token_only_through_a_dynamic_reference(self, env):
        tokens = [app(env)[k] for k in ("AccessToken", "OauthToken") if k in app(env)]
        assert len(tokens) == 1 and DYNAMIC_REFERENCE.match(tokens[0]), tokens

    def test_dynamic_reference_names_the_bootstrap_secret_and_json_key(self, env):
        token = app(env).get("AccessToken") or app(env)["OauthToken"]
        assert token == f"{{{{resolve:secretsmanager:{cfg(env).app_name}/amplify/git-token:SecretString:token}}}}"

    @pytest.mark.parametrize("name", ["frontend", "frontend_branch", "root"])
    def test_no_parameter_carries_a_token_or_secret(self, env, name):
        params = stack(env, name).get("Parameters", {})
        assert not [p for p in params if re.search(r"token|secret|password", p, re.I)]

    def test_platform_is_web_compute(self, env):
        assert app(env)["Platform"] == "WEB_COMPUTE"

    def test_repository_from_config(self, env):
        assert app(env)["Repository"] == cfg(env).frontend.repository

    def test_build_spec_is_the_committed_file(self, env):
        assert app(env)["BuildSpec"] == (REPO_ROOT / "amplify" / "amplify.yml").read_text()

    def test_managed_cache_standard_builds_no_branch_auto_deletion(self, env):
        a = app(env)
        assert (a["CacheConfig"], a["JobConfig"], a["EnableBranchAutoDeletion"]) == (
            {"Type": "AMPLIFY_MANAGED"}, {"BuildComputeType": "STANDARD_8GB"}, False)

    def test_node_version_from_config(self, env):
        assert {"Name": "NODE_VERSION", "Value": cfg(env).frontend.node_version} in app(env)["EnvironmentVariables"]

    def test_required_security_headers_present(self, env):
        assert {"Strict-Transport-Security", "Content-Security-Policy", "X-Frame-Options",
                "X-Content-Type-Options", "Referrer-Policy", "Permissions-Policy"} <= set(headers(env))

    def test_hsts_at_least_one_year_with_subdomains(self, env):
        hsts = headers(env)["Strict-Transport-Security"]
        assert int(re.search(r"max-age=(\d+)", hsts)[1]) >= 31536000 and "includeSubDomains" in hsts

    def test_framing_and_sniffing_denied(self, env):
        h = headers(env)
        assert (h["X-Frame-Options"], h["X-Content-Type-Options"], h["Referrer-Policy"]) == (
            "DENY", "nosniff", "strict-origin-when-cross-origin")

    def test_csp_locks_down_defaults_and_framing(self, env):
        c = csp(env)
        assert (c["default-src"], c["frame-ancestors"], c["object-src"]) == (["'self'"], ["'none'"], ["'none'"])

    def test_csp_lets_the_browser_reach_the_backend_and_custom_domains(self, env):
        domain = cfg(env).frontend.custom_domain
        expected = {"'self'", "https://*.awsapprunner.com", *(domain.origins if domain else [])}
        assert expected <= set(csp(env)["connect-src"])

    def test_csp_allows_no_plain_http_or_wildcard_source(self, env):
        sources = [s for values in csp(env).values() for s in values]
        assert not [s for s in sources if s.startswith("http:") or s in ("*", "https:", "https://*")]

    def test_headers_other_than_csp_equal_the_committed_file(self, env):
        committed = yaml.safe_load((REPO_ROOT / "amplify" / "customHttp.yml").read_text())
        expected = {h["key"]: h["value"] for h in committed["customHeaders"][0]["headers"]}
        actual = headers(env)
        assert {k: v for k, v in actual.items() if k != "Content-Security-Policy"} == {
            k: v for k, v in expected.items() if k != "Content-Security-Policy"}

    def test_roles_trust_only_amplify_of_this_account(self, env):
        for logical_id in ("AmplifyServiceRole", "SsrComputeRole"):
            (trust,) = statements(props(app_tmpl(env)["Resources"][logical_id])["AssumeRolePolicyDocument"])
            assert trust["Principal"] == {"Service": "amplify.amazonaws.com"}
            assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
            assert "aws:SourceArn" in trust["Condition"]["ArnLike"]

    def test_app_uses_both_roles(self, env):
        a = app(env)
        assert (a["IAMServiceRole"], a["ComputeRoleArn"]) == (
            {"Fn::GetAtt": ["AmplifyServiceRole", "Arn"]}, {"Fn::GetAtt": ["SsrComputeRole", "Arn"]})

    def test_compute_role_has_no_permissions_by_default(self, env):
        role = props(app_tmpl(env)["Resources"]["SsrComputeRole"])
        attached = [p for p in resources_of(app_tmpl(env), "AWS::IAM::Policy").values()
                    if {"Ref": "SsrComputeRole"} in props(p)["Roles"]]
        assert ("Policies" not in role, "ManagedPolicyArns" not in role, attached) == (True, True, [])

    def test_service_role_writes_only_the_apps_log_group(self, env):
        (policy,) = resources_of(app_tmpl(env), "AWS::IAM::Policy").values()
        found = statements(props(policy)["PolicyDocument"])
        assert found and props(policy)["Roles"] == [{"Ref": "AmplifyServiceRole"}]
        for s in found:
            if s["Resource"] == ["*"]:
                assert s["Action"] == ["logs:DescribeLogGroups"]  # no resource-level permission exists
            else:
                assert all("/aws/amplify/${App.AppId}" in r["Fn::Sub"] for r in s["Resource"])
                assert set(s["Action"]) <= {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}

    def test_ssr_log_group_encrypted_with_ops_key_and_retained_in_production(self, env):
        group = app_tmpl(env)["Resources"]["SsrLogGroup"]
        p = props(group)
        assert (p["KmsKeyId"], p["RetentionInDays"]) == (OPS_KEY, cfg(env).logging.retention_days)
        assert p["LogGroupName"] == {"Fn::Sub": "/aws/amplify/${App.AppId}"}
        assert group["DeletionPolicy"] == ("RetainExceptOnCreate" if cfg(env).production else "Delete")

    def test_branch_url_and_origins(self, env):
        outputs = app_tmpl(env)["Outputs"]
        branch_url = outputs["BranchUrl"]["Value"]
        assert branch_url == {"Fn::Sub": f"https://{cfg(env).frontend_branch_host_prefix}.${{App.DefaultDomain}}"}
        domain = cfg(env).frontend.custom_domain
        assert outputs["FrontendOrigins"]["Value"] == {
            "Fn::Join": [",", [branch_url, *(domain.origins if domain else [])]]}


def test_csp_extension_refuses_a_policy_without_the_directive():
    with pytest.raises(ValueError, match="connect-src"):
        _amplify._extend_csp("default-src 'self'", {"connect-src": ["https://x.example.com"]})


def test_csp_extension_appends_without_duplicates():
    assert _amplify._extend_csp("img-src 'self' data:; connect-src 'self'", {"connect-src": ["'self'", "https://a"]}) \
        == "img-src 'self' data:; connect-src 'self' https://a"


def test_oauth_token_for_non_github_repository():
    config = fixture_config.environment("dev").model_copy(deep=True)
    config = config.model_copy(update={"frontend": config.frontend.model_copy(
        update={"repository": "https://gitlab.com/org/web"})})
    a = props(json.loads(frontend.build(config).to_json())["Resources"]["App"])
    assert ("AccessToken" in a, DYNAMIC_REFERENCE.match(a["OauthToken"]) is not None) == (False, True)


# ---- build spec ---------------------------------------------------------------------------------

def test_build_spec_writes_env_production_before_building():
    spec = yaml.safe_load((REPO_ROOT / "amplify" / "amplify.yml").read_text())
    commands = spec["frontend"]["phases"]["build"]["commands"]
    env_step = next(i for i, c in enumerate(commands) if ".env.production" in c)
    assert spec["version"] == 1 and env_step < commands.index("npm run build")
    assert "NEXT_PUBLIC_API_BASE_URL" in commands[env_step] and "APP_ENVIRONMENT" in commands[env_step]


def test_build_spec_artifacts_and_cache():
    spec = yaml.safe_load((REPO_ROOT / "amplify" / "amplify.yml").read_text())["frontend"]
    assert spec["artifacts"] == {"baseDirectory": ".next", "files": ["**/*"]}
    assert ".next/cache/**/*" in spec["cache"]["paths"]


def test_build_spec_has_no_braced_shell_variables():
    """`${NAME}` would be read by CloudFormation tooling as an Fn::Sub variable."""
    assert "${" not in (REPO_ROOT / "amplify" / "amplify.yml").read_text()


# ---- branch, custom domain, first build -------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
class TestBranch:
    def test_branch_from_config_with_stage_per_environment(self, env):
        b = branch(env)
        assert (b["BranchName"], b["Stage"]) == (
            cfg(env).frontend.branch, "PRODUCTION" if cfg(env).production else "DEVELOPMENT")

    def test_auto_build_on_and_framework_next_ssr(self, env):
        assert (branch(env)["EnableAutoBuild"], branch(env)["Framework"]) == (True, "Next.js - SSR")

    def test_pull_request_previews_from_config_and_never_in_production(self, env):
        previews = branch(env)["EnablePullRequestPreview"]
        assert previews == cfg(env).frontend.pull_request_previews and not (previews and cfg(env).production)

    def test_backend_url_variable_is_the_https_service_url(self, env):
        variables = {v["Name"]: v["Value"] for v in branch(env)["EnvironmentVariables"]}
        assert variables == {"NEXT_PUBLIC_API_BASE_URL": {"Ref": "ServiceUrl"}, "APP_ENVIRONMENT": env,
                             **cfg(env).frontend.environment}   # the kit's two, then the app's own
        assert branch_tmpl(env)["Parameters"]["ServiceUrl"]["AllowedPattern"].startswith("^https://")

    def test_root_feeds_the_backend_service_url(self, env):
        child = props(stack(env, "root")["Resources"]["FrontendBranch"])["Parameters"]
        assert (child["ServiceUrl"], child["AppId"]) == (
            {"Fn::GetAtt": ["Backend", "Outputs.ServiceUrl"]}, {"Fn::GetAtt": ["Frontend", "Outputs.AppId"]})

    def test_custom_domain_only_where_configured_with_its_subdomains(self, env):
        domains = resources_of(branch_tmpl(env), "AWS::Amplify::Domain")
        configured = cfg(env).frontend.custom_domain
        if configured is None:
            assert domains == {}
            return
        (domain,) = [props(d) for d in domains.values()]
        assert (domain["DomainName"], [s.get("Prefix", "") for s in domain["SubDomainSettings"]]) == (
            configured.name, configured.subdomains)
        assert {json.dumps(s["BranchName"]) for s in domain["SubDomainSettings"]} == {
            json.dumps({"Fn::GetAtt": ["Branch", "BranchName"]})}
        assert domain["CertificateSettings"] == {"CertificateType": "AMPLIFY_MANAGED"}

    def test_first_build_custom_resource_targets_this_branch(self, env):
        (resource,) = [r for r in branch_tmpl(env)["Resources"].values() if r["Type"] == "Custom::AmplifyStartJob"]
        p = props(resource)
        assert (p["AppId"], p["BranchName"], p["ServiceToken"]) == (
            {"Ref": "AppId"}, {"Fn::GetAtt": ["Branch", "BranchName"]}, {"Fn::GetAtt": ["StartJobFunction", "Arn"]})

    def test_first_build_reruns_when_the_backend_url_changes(self, env):
        p = props(branch_tmpl(env)["Resources"]["FirstBuild"])
        assert p["BuildInputs"]["NEXT_PUBLIC_API_BASE_URL"] == {"Ref": "ServiceUrl"}
        digest = p["BuildInputs"]["AppSettingsSha256"]
        assert re.fullmatch(r"[0-9a-f]{64}", digest)   # a SHA-256, hex
        other = cfg(env).model_copy(update={"frontend": cfg(env).frontend.model_copy(update={"node_version": "0"})})
        rebuilt = props(to_data(frontend_branch.build(other))["Resources"]["FirstBuild"])["BuildInputs"]
        assert rebuilt["AppSettingsSha256"] != digest  # the rendered digest follows the app settings
        assert props(to_data(frontend_branch.build(cfg(env)))["Resources"]["FirstBuild"])["BuildInputs"][
            "AppSettingsSha256"] == digest  # and only them: same config, same digest
        for name, value in cfg(env).frontend.environment.items():   # a changed build-time variable rebuilds
            assert p["BuildInputs"][name] == value

    def test_first_build_role_can_only_start_jobs_of_this_branch(self, env):
        found = role_statements(branch_tmpl(env), "StartJobFunctionRole")
        amplify = [s for s in found if any(a.startswith("amplify:") for a in as_list(s["Action"]))]
        assert [s["Action"] for s in amplify] == [["amplify:StartJob"]]
        assert amplify[0]["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:amplify:${AWS::Region}:${AWS::AccountId}"
                                           f":apps/${{AppId}}/branches/{cfg(env).frontend.branch}/jobs/*"}]
        others = [a for s in found if s not in amplify for a in as_list(s["Action"])]
        assert set(others) <= {"logs:CreateLogStream", "logs:PutLogEvents"}

    def test_first_build_function_is_the_committed_handler_with_encrypted_logs(self, env):
        fn = props(branch_tmpl(env)["Resources"]["StartJobFunction"])
        assert fn["Code"]["ZipFile"] == Path(handler.__file__).read_text()
        assert props(branch_tmpl(env)["Resources"]["StartJobFunctionLogs"])["KmsKeyId"] == OPS_KEY


# ---- first-build handler (in-process: botocore Stubber for Amplify, a fake for CloudFormation) ----

APP_ID, BRANCH = "d1abc2def3", "main"


def event(request_type: str, **extra) -> dict:
    return {"RequestType": request_type, "ResponseURL": "https://cloudformation-response.example/presigned",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1", "RequestId": "r-1",
            "LogicalResourceId": "FirstBuild", "ResourceType": "Custom::AmplifyStartJob",
            "ResourceProperties": {"ServiceToken": "arn:fn", "AppId": APP_ID, "BranchName": BRANCH,
                                   "BuildInputs": {}}, **extra}


@pytest.fixture
def amplify_stub(monkeypatch):
    client = boto3.client("amplify", region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    monkeypatch.setattr(handler, "_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def responses(monkeypatch) -> list[dict]:
    sent: list[dict] = []
    monkeypatch.setattr(handler, "_send", lambda ev, ctx, status, reason, pid, data: sent.append(
        {"Status": status, "Reason": reason, "PhysicalResourceId": pid, "Data": data}))
    return sent


def expect_start_job(stubber: Stubber, job_id: str, reason: str) -> None:
    """The exact StartJob call the handler must make (the stubber rejects any other parameters)."""
    summary = {"jobArn": f"arn:aws:amplify:eu-west-1:123456789012:apps/{APP_ID}/branches/{BRANCH}/jobs/{job_id}",
               "jobId": job_id, "commitId": "HEAD", "commitMessage": "", "commitTime": 0, "startTime": 0,
               "status": "PENDING", "jobType": "RELEASE"}
    stubber.add_response("start_job", {"jobSummary": summary},
                         {"appId": APP_ID, "branchName": BRANCH, "jobType": "RELEASE", "jobReason": reason})


def test_create_starts_a_release_job(amplify_stub, responses):
    expect_start_job(amplify_stub, "7", "CloudFormation: first build after stack creation")
    handler.handler(event("Create"), None)
    assert responses == [{"Status": "SUCCESS", "Reason": "started RELEASE job 7 (first build after stack creation)",
                          "PhysicalResourceId": f"{APP_ID}/{BRANCH}", "Data": {"JobId": "7"}}]


def test_update_starts_a_new_job(amplify_stub, responses):
    expect_start_job(amplify_stub, "8", "CloudFormation: build inputs changed")
    handler.handler(event("Update", PhysicalResourceId=f"{APP_ID}/{BRANCH}"), None)
    assert (responses[0]["Status"], responses[0]["Data"]) == ("SUCCESS", {"JobId": "8"})


def test_delete_calls_nothing_and_succeeds(amplify_stub, responses):
    handler.handler(event("Delete", PhysicalResourceId="keep-me"), None)  # the stubber fails on any call
    assert (responses[0]["Status"], responses[0]["PhysicalResourceId"]) == ("SUCCESS", "keep-me")


def test_api_error_is_reported_as_failed_with_the_reason(amplify_stub, responses):
    amplify_stub.add_client_error("start_job", service_error_code="NotFoundException", service_message="no branch")
    handler.handler(event("Create"), None)
    assert responses[0]["Status"] == "FAILED" and "no branch" in responses[0]["Reason"]


def test_missing_properties_fail_without_calling_amplify(amplify_stub, responses):
    ev = event("Create")
    ev["ResourceProperties"] = {"ServiceToken": "arn:fn"}
    handler.handler(ev, None)
    assert responses[0]["Status"] == "FAILED" and "required" in responses[0]["Reason"]


def test_unknown_request_type_fails(amplify_stub, responses):
    handler.handler(event("Explode"), None)
    assert responses[0]["Status"] == "FAILED"


def test_response_is_a_put_with_empty_content_type_and_the_stack_identifiers(monkeypatch):
    captured = {}

    class Reply(io.BytesIO):
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(request, timeout):
        captured.update(method=request.get_method(), url=request.full_url, body=json.loads(request.data),
                        content_type=request.get_header("Content-type"), timeout=timeout)
        return Reply()

    monkeypatch.setattr(handler.urllib.request, "urlopen", fake_urlopen)
    handler._send(event("Create"), None, "SUCCESS", "ok", "pid", {"JobId": "1"})
    assert (captured["method"], captured["url"], captured["content_type"]) == (
        "PUT", "https://cloudformation-response.example/presigned", "")
    assert {k: captured["body"][k] for k in ("Status", "PhysicalResourceId", "StackId", "RequestId",
                                             "LogicalResourceId", "Data")} == {
        "Status": "SUCCESS", "PhysicalResourceId": "pid", "StackId": event("Create")["StackId"],
        "RequestId": "r-1", "LogicalResourceId": "FirstBuild", "Data": {"JobId": "1"}}


def test_handler_answers_before_the_function_times_out(monkeypatch):
    """Every API attempt, and the answer to CloudFormation, fit in the function's timeout (boto3's defaults,
    60 s reads with retries, would not: the function would die without answering)."""
    config = handler.CLIENT_CONFIG
    worst_api = config.retries["max_attempts"] * (config.connect_timeout + config.read_timeout)
    assert worst_api + handler.RESPONSE_TIMEOUT_SECONDS < frontend_branch.START_JOB_TIMEOUT_SECONDS
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = handler._client()
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (
        config.connect_timeout, config.read_timeout)


def test_the_config_reserves_exactly_the_kits_frontend_variable_names():
    from generator.config import FRONTEND_KIT_VARIABLES

    assert set(FRONTEND_KIT_VARIABLES) == {frontend_branch.API_BASE_URL_VARIABLE,
                                           frontend_branch.ENVIRONMENT_VARIABLE, frontend.NODE_VERSION_VARIABLE}


def test_declared_frontend_variables_reach_the_branch_build():
    config = fixture_config.environment("dev")
    built = props(json.loads(frontend_branch.build(config).to_json())["Resources"]["Branch"])
    variables = {v["Name"]: v["Value"] for v in built["EnvironmentVariables"]}
    assert variables["NEXT_PUBLIC_ANALYTICS_ID"] == "fixture-analytics"
    assert variables["NEXT_PUBLIC_API_BASE_URL"] == {"Ref": "ServiceUrl"}
