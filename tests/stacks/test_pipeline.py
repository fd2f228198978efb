"""Invariants of the account-level pipeline stack and its build specs.

Release flow: trigger on push to the source branch, stage order build -> dev -> smoke -> approval -> prod,
the approval before any prod change, rollback on the deploy stages, images tagged with the commit sha.
Security: no wildcard IAM action anywhere, privileged mode only for the image build, encrypted artifacts and
logs, a deployment role that covers exactly the environment templates' resource types.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from cfn_helpers import as_list, one, props, require, resources_of, statements, template
from pydantic import ValidationError

from generator import compose, deploy_permissions, deploy_scopes, naming, render
from generator.cfn import to_data
from generator.config import MIN_LOG_RETENTION_DAYS, AccountConfig, ConfigError, load_account, load_all
from generator.stacks import pipeline

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = load_account()
CHAIN = [e for name in ACCOUNT.pipeline_environments for e in load_all() if e.name == name]
FIRST, LAST = CHAIN[0], CHAIN[-1]
CHANGING_MODES = {"CREATE_UPDATE", "CHANGE_SET_EXECUTE", "REPLACE_ON_FAILURE", "DELETE_ONLY"}


def tmpl() -> dict:
    return template("pipeline.yaml")


def pipe() -> dict:
    return props(one(tmpl(), "AWS::CodePipeline::Pipeline")[1])


def stages() -> list[dict]:
    return pipe()["Stages"]


def ordered_actions() -> list[tuple[str, dict]]:
    """(stage name, action) in execution order: stage by stage, then by RunOrder."""
    return [(s["Name"], a) for s in stages() for a in sorted(s["Actions"], key=lambda a: a["RunOrder"])]


def provider(action: dict) -> str:
    return action["ActionTypeId"]["Provider"]


def project_by_ref(action: dict) -> dict:
    return props(tmpl()["Resources"][action["Configuration"]["ProjectName"]["Ref"]])


def buildspec(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def commands(spec: dict) -> str:
    return "\n".join(c for phase in spec["phases"].values() for c in phase.get("commands", []))


def allow_statements() -> list[tuple[str, dict]]:
    found = []
    for lid, res in tmpl()["Resources"].items():
        documents = [p["PolicyDocument"] for p in props(res).get("Policies", [])]
        if res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            documents.append(props(res)["PolicyDocument"])
        found += [(lid, s) for d in documents for s in statements(d) if s["Effect"] == "Allow"]
    return found


# ---- release flow -----------------------------------------------------------------------------------

def test_pipeline_is_v2_and_triggered_by_push_to_main():
    assert pipe()["PipelineType"] == "V2"
    (trigger,) = pipe()["Triggers"]
    assert trigger["ProviderType"] == "CodeStarSourceConnection"
    assert trigger["GitConfiguration"]["SourceActionName"] == stages()[0]["Actions"][0]["Name"]
    assert [p["Branches"]["Includes"] for p in trigger["GitConfiguration"]["Push"]] == [["main"]]
    assert ACCOUNT.source_branch == "main"


def test_source_is_the_configured_repository_through_the_connection():
    source = stages()[0]["Actions"][0]
    assert provider(source) == "CodeStarSourceConnection"
    assert source["Configuration"]["FullRepositoryId"] == ACCOUNT.source_repository
    assert source["Configuration"]["BranchName"] == ACCOUNT.source_branch
    assert source["Configuration"]["ConnectionArn"] == {"Fn::GetAtt": ["SourceConnection", "ConnectionArn"]}
    assert props(one(tmpl(), "AWS::CodeConnections::Connection")[1])["ProviderType"] == ACCOUNT.source_provider


def test_stage_order_is_build_dev_smoke_approval_prod():
    """Every environment but the last is deployed and smoke-tested in order; the last waits for approval."""
    earlier = [f"{kind}-{e.name}" for e in CHAIN[:-1] for kind in ("Deploy", "Smoke")]
    assert [s["Name"] for s in stages()] == ["Source", "Build", *earlier, f"Deploy-{LAST.name}"]


def test_manual_approval_precedes_every_change_to_prod():
    actions = ordered_actions()
    prod = naming.root_stack_name(LAST)
    approvals = [i for i, (_, a) in enumerate(actions) if provider(a) == "Manual"]
    changes = [i for i, (_, a) in enumerate(actions) if provider(a) == "CloudFormation"
               and a["Configuration"]["StackName"] == prod and a["Configuration"]["ActionMode"] in CHANGING_MODES]
    assert approvals and changes
    assert min(changes) > min(approvals)


def test_prod_change_set_is_created_before_the_approval_and_linked_from_it():
    (approve_stage,) = [s for s in stages() if s["Name"] == f"Deploy-{LAST.name}"]
    by_name = {a["Name"]: a for a in approve_stage["Actions"]}
    create, approve = by_name["CreateChangeSet"], by_name["Approve"]
    assert create["Configuration"]["ActionMode"] == "CHANGE_SET_REPLACE" and create["RunOrder"] < approve["RunOrder"]
    link = approve["Configuration"]["ExternalEntityLink"]["Fn::Sub"]
    assert naming.root_stack_name(LAST) in link and create["Configuration"]["ChangeSetName"] in link
    assert approve["Configuration"]["NotificationArn"] == {"Ref": "ApprovalTopic"}


def test_prod_deploy_executes_the_reviewed_change_set_without_recreating_it():
    (deploy,) = [s for s in stages() if s["Name"] == f"Deploy-{LAST.name}"]
    ordered = sorted(deploy["Actions"], key=lambda a: a["RunOrder"])
    assert [a["Configuration"].get("ActionMode", provider(a)) for a in ordered] == [
        "CHANGE_SET_REPLACE", "Manual", "CHANGE_SET_EXECUTE"]


def test_first_environment_deploys_automatically_with_create_update():
    (deploy,) = [s for s in stages() if s["Name"] == f"Deploy-{FIRST.name}"]
    (action,) = deploy["Actions"]
    assert action["Configuration"]["ActionMode"] == "CREATE_UPDATE"
    assert action["Configuration"]["StackName"] == naming.root_stack_name(FIRST)
    assert set(action["Configuration"]["Capabilities"].split(",")) == {
        "CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"}
    assert action["Configuration"]["RoleArn"] == {"Fn::GetAtt": ["DeployRole", "Arn"]}
    assert action["Configuration"]["TemplateConfiguration"] == f"Templates::{FIRST.name}/config.json"


def test_every_stage_that_changes_a_stack_rolls_back_on_failure():
    changing = [stage for stage in stages() if any(provider(a) == "CloudFormation"
                                                   and a["Configuration"]["ActionMode"] in CHANGING_MODES
                                                   for a in stage["Actions"])]
    assert {s["Name"] for s in changing} >= {f"Deploy-{FIRST.name}", f"Deploy-{LAST.name}"}
    for stage in changing:
        assert stage.get("OnFailure") == {"Result": "ROLLBACK"}, stage["Name"]


def test_smoke_test_calls_the_url_the_dev_deploy_just_output():
    (smoke,) = [s for s in stages() if s["Name"] == f"Smoke-{FIRST.name}"]
    (action,) = smoke["Actions"]
    variables = {v["name"]: v["value"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])}
    (deploy,) = [a for s, a in ordered_actions() if s == f"Deploy-{FIRST.name}"]
    assert variables["BACKEND_URL"] == f"#{{{deploy['Namespace']}.{pipeline.BACKEND_URL_OUTPUT}}}"
    assert pipeline.BACKEND_URL_OUTPUT in compose.ROOT_OUTPUTS  # the root stack outputs what the smoke test reads
    assert project_by_ref(action)["Source"]["BuildSpec"] == "generator/buildspecs/smoke.yml"


# ---- build once, tag with the commit sha --------------------------------------------------------------

def test_builds_receive_the_commit_sha_as_image_tag():
    source = stages()[0]["Actions"][0]
    for action in stages()[1]["Actions"]:
        variables = {v["name"]: v["value"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])}
        assert variables["IMAGE_TAG"] == f"#{{{source['Namespace']}.CommitId}}", action["Name"]


def test_backend_build_spec_pushes_the_image_once_tagged_with_the_sha_and_runs_pytest():
    text = commands(buildspec("generator/buildspecs/backend.yml"))
    assert 'image="$ECR_REPOSITORY_URI:$IMAGE_TAG"' in text and 'docker push "$image"' in text
    assert text.count("docker build") == 1 and "describe-images" in text  # immutable tag: never rebuilt
    assert "pytest" in text and "make postgres" in text
    assert "latest" not in text


def test_backend_build_uses_the_configured_source_dir_and_only_the_services_requirements():
    text = commands(buildspec("generator/buildspecs/backend.yml"))
    assert 'docker build' in text and '"$SOURCE_DIR"' in text.split("docker build", 1)[1].split("\n", 1)[0]
    assert '-r "$SOURCE_DIR/requirements.txt"' in text and "$SOURCE_DIR/requirements-test.txt" in text
    assert "make venv" not in text and "pip install -e" not in text and "pip install --quiet -e" not in text
    project = props(tmpl()["Resources"]["BackendBuild"])
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert (variables["SOURCE_DIR"], variables["BACKEND_TESTS"]) == pipeline.backend_source(CHAIN)
    assert variables["SOURCE_DIR"] == FIRST.backend.source_dir


def test_backend_source_dir_is_build_context_and_test_root():
    def chain(*folders):
        return [c.model_copy(update={"backend": c.backend.model_copy(update={"source_dir": f})})
                for c, f in zip(CHAIN, folders, strict=False)]
    other = [f"services/api{i}" for i in range(len(CHAIN))]
    assert pipeline.backend_source(chain(*["services/api"] * len(CHAIN))) == ("services/api", "services/api")
    assert pipeline.backend_source(chain(*["apprunner"] * len(CHAIN))) == ("apprunner", "tests/service")
    with pytest.raises(ConfigError, match="same folder"):
        pipeline.backend_source(chain(*other))


def test_infra_build_spec_writes_image_tag_into_every_template_configuration():
    spec = buildspec("generator/buildspecs/infra.yml")
    text = commands(spec)
    assert ".Parameters.ImageTag = $tag" in text and '--arg tag "$IMAGE_TAG"' in text
    assert "aws cloudformation package" in text and "make lint" in text
    assert "adkit check $PIPELINE_ENVIRONMENTS bootstrap pipeline" in text   # the account-level config too
    assert 'out/$env/packaged.yaml' in text and 'out/$env/config.json' in text
    assert spec["artifacts"]["base-directory"] == "out"
    project = props(tmpl()["Resources"]["InfraBuild"])
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables["PIPELINE_ENVIRONMENTS"].split() == ACCOUNT.pipeline_environments


@pytest.mark.parametrize("path", ["generator/buildspecs/backend.yml", "generator/buildspecs/infra.yml",
                                  "generator/buildspecs/smoke.yml"])
def test_build_specs_parse_and_hold_no_secret_value(path):
    spec = buildspec(path)
    assert spec["version"] == 0.2 and spec["phases"]
    assert not spec.get("env", {}).get("parameter-store")
    assert all(not any(w in k.upper() for w in ("SECRET", "PASSWORD", "TOKEN"))
               for k in spec.get("env", {}).get("variables", {}))


def test_every_project_uses_a_committed_build_spec():
    for project in require(tmpl(), "AWS::CodeBuild::Project").values():
        assert (REPO / props(project)["Source"]["BuildSpec"]).is_file()


# ---- least privilege ------------------------------------------------------------------------------

def test_no_wildcard_action_in_any_allow_statement():
    found = allow_statements()
    assert found, "no Allow statement found"
    for lid, statement in found:
        assert "NotAction" not in statement, lid
        assert not [a for a in as_list(statement["Action"]) if "*" in a], lid


def test_resource_star_only_where_no_resource_type_exists():
    star = {(lid, a) for lid, s in allow_statements() if s["Resource"] in ("*", ["*"]) for a in as_list(s["Action"])}
    non_deploy = {(lid, a) for lid, a in star if not lid.startswith("DeployPolicy")}
    assert non_deploy == {("BackendBuildRole", "ecr:GetAuthorizationToken"),
                          ("PipelineRole", "cloudformation:ValidateTemplate")}


def test_privileged_mode_only_for_the_image_project():
    privileged = {lid for lid, p in resources_of(tmpl(), "AWS::CodeBuild::Project").items()
                  if props(p)["Environment"].get("PrivilegedMode")}
    assert privileged == {"BackendBuild"}
    assert props(tmpl()["Resources"]["BackendBuild"])["Source"]["BuildSpec"] == "generator/buildspecs/backend.yml"


def test_only_the_image_project_may_push_to_ecr():
    pushers = {lid for lid, s in allow_statements() if "ecr:PutImage" in as_list(s["Action"])}
    assert pushers == {"BackendBuildRole"}


def test_pipeline_role_passes_only_the_deploy_role_and_only_to_cloudformation():
    (passing,) = [s for lid, s in allow_statements() if lid == "PipelineRole" and "iam:PassRole" in s["Action"]]
    assert passing["Resource"] == [{"Fn::GetAtt": ["DeployRole", "Arn"]}]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}


def test_pipeline_role_cannot_delete_environment_stacks():
    actions = {a for lid, s in allow_statements() if lid == "PipelineRole" for a in as_list(s["Action"])}
    assert "cloudformation:DeleteStack" not in actions


def test_only_the_gated_environment_is_changed_through_change_sets():
    (gated,) = [s for lid, s in allow_statements() if lid == "PipelineRole"
                and "cloudformation:ExecuteChangeSet" in s["Action"]]
    assert f"stack/{naming.root_stack_name(LAST)}/*" in json.dumps(gated["Resource"])
    assert f"stack/{naming.root_stack_name(FIRST)}/" not in json.dumps(gated["Resource"])


def test_deploy_role_is_assumable_by_cloudformation_only():
    trust = props(tmpl()["Resources"]["DeployRole"])["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in statements(trust)] == [{"Service": ["cloudformation.amazonaws.com"]}]


def test_deploy_role_covers_every_resource_type_of_the_environment_templates():
    granted = {a for lid, s in allow_statements()
               if lid.startswith(("DeployPolicy", "DeployScopedPolicy", "DeployRole")) for a in as_list(s["Action"])}
    for config in CHAIN:
        templates = list(render.environment_data(config).values())
        types = deploy_permissions.resource_types(templates)
        service = {"apprunner": "AWS::AppRunner::Service",
                   "ecs-express": "AWS::ECS::ExpressGatewayService"}[config.backend.platform]
        assert {"AWS::RDS::DBCluster", service, "AWS::CloudFormation::Stack"} <= set(types)
        unused = deploy_scopes.unused_feature_actions(templates)
        for type_ in types:
            # Removing a permissions boundary is never granted (docs/pipeline.md, permissions boundary); a
            # feature no template turns on needs no permission (deploy_scopes.OPTIONAL_FEATURES).
            missing = deploy_permissions.handler_permissions(type_) - granted - deploy_scopes.NEVER_GRANTED - unused
            assert not missing, f"{config.name}: {type_} needs {sorted(missing)}"


def test_deploy_role_may_pass_itself_to_cloudformation_for_the_nested_stacks():
    """Nested stacks inherit the root's service role: CloudFormation passes the role to itself for each one."""
    passing = [(lid, s) for lid, s in allow_statements() if "iam:PassRole" in as_list(s["Action"])
               and {"Fn::GetAtt": ["DeployRole", "Arn"]} in as_list(s["Resource"])]
    assert sorted(lid for lid, _ in passing) == ["DeployRolePassesItself", "PipelineRole"]
    (own,) = [s for lid, s in passing if lid == "DeployRolePassesItself"]
    assert own["Resource"] == [{"Fn::GetAtt": ["DeployRole", "Arn"]}]
    assert own["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
    assert props(tmpl()["Resources"]["DeployRolePassesItself"])["Roles"] == [{"Ref": "DeployRole"}]


def test_root_stack_names_must_survive_cloudformations_generated_name_cut():
    """Generated role/function names keep 25 characters of the stack name; the scopes match `<root>-*`."""
    for config in CHAIN:
        assert len(naming.root_stack_name(config)) <= pipeline.GENERATED_NAME_STACK_CHARS
    app = "adagency-virtual-web"  # 20 characters, the longest app_name allowed
    envs = [c.model_copy(update={"app_name": app, "name": "qastage" if c.name == FIRST.name else c.name})
            for c in CHAIN]
    with pytest.raises(ConfigError, match=f"{app}-qastage.*longer than 25"):
        pipeline.build(_account(app_name=app, pipeline_environments=["qastage", LAST.name]), envs, {})


def test_deploy_role_scopes_iam_and_nested_stacks_to_the_environments():
    scoped = {s["Sid"]: json.dumps(s["Resource"]) for lid, s in allow_statements() if lid == "DeployRole"}
    for config in CHAIN:
        assert f"role/{naming.root_stack_name(config)}-*" in scoped["PassOnlyRolesOfTheEnvironments"]
        assert f"stack/{naming.root_stack_name(config)}-*/*" in scoped["NestedStacksOfTheEnvironments"]
    assert "role/*" not in scoped["RolesAndPoliciesOfTheEnvironments"]


def test_deploy_managed_policies_fit_the_iam_size_limit():
    for lid, res in require(tmpl(), "AWS::IAM::ManagedPolicy").items():
        size = len(json.dumps(props(res)["PolicyDocument"], separators=(",", ":")))
        assert size <= deploy_permissions.MANAGED_POLICY_MAX_CHARS, lid
        assert props(res)["Roles"] == [{"Ref": "DeployRole"}]


# ---- encryption and logs --------------------------------------------------------------------------

def test_artifact_store_is_the_bootstrap_bucket_encrypted_with_the_bootstrap_key():
    store = pipe()["ArtifactStore"]
    assert store["Location"] == {"Fn::ImportValue": naming.bootstrap_export(ACCOUNT.app_name, "ArtifactBucketName")}
    assert store["EncryptionKey"] == {
        "Id": {"Fn::ImportValue": naming.bootstrap_export(ACCOUNT.app_name, "ArtifactKeyArn")}, "Type": "KMS"}


def test_build_logs_are_encrypted_with_retention_of_at_least_30_days():
    for lid, project in require(tmpl(), "AWS::CodeBuild::Project").items():
        group = props(tmpl()["Resources"][props(project)["LogsConfig"]["CloudWatchLogs"]["GroupName"]["Ref"]])
        assert group["KmsKeyId"] and group["RetentionInDays"] >= MIN_LOG_RETENTION_DAYS, lid
        assert group["RetentionInDays"] == ACCOUNT.logging.retention_days
        assert props(project)["EncryptionKey"] == group["KmsKeyId"]


def test_approval_topic_is_encrypted():
    assert props(one(tmpl(), "AWS::SNS::Topic")[1])["KmsMasterKeyId"]


# ---- the smoke test itself, against the reference service --------------------------------------------

def _smoke_script() -> tuple[str, dict[str, str]]:
    spec = buildspec("generator/buildspecs/smoke.yml")
    (script,) = spec["phases"]["build"]["commands"]
    # local servers speak plain HTTP; everything else runs as in CodeBuild
    return script.replace('[[ "${BACKEND_URL:-}" == https://* ]]', "true"), spec["env"]["variables"]


def _run_smoke(base: str, **overrides: str) -> subprocess.CompletedProcess:
    script, variables = _smoke_script()
    env = {**os.environ, **variables, "BACKEND_URL": base, "RELEASE": "0" * 40, **overrides}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)


class _NoEvents(http.server.BaseHTTPRequestHandler):
    """Healthy, creates projects, but its event stream never delivers an event."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/healthz":
            self._send(200, "application/json", b'{"status":"ok"}')
        else:
            self._send(200, "text/event-stream", b"retry: 1000\n\n: ping\n\n")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(201, "application/json", b'{"id":"00000000-0000-0000-0000-000000000001"}')

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_smoke_script_fails_when_no_event_arrives():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoEvents)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = _run_smoke(f"http://127.0.0.1:{server.server_port}", STREAM_SECONDS="3", EVENT_WAIT_SECONDS="2")
    finally:
        server.shutdown()
    assert result.returncode != 0 and "no SSE event arrived" in result.stderr


RUN_ID = "00000000-0000-0000-0000-0000000000aa"


class _Runs(_NoEvents):
    """Healthy, delivers the SSE event, accepts a run and reports the states in `states` one GET at a time."""

    states: list[str] = []
    error = "model refused the brief"

    def do_GET(self):
        if self.path == "/healthz":
            self._send(200, "application/json", b'{"status":"ok"}')
        elif self.path.endswith(f"/runs/{RUN_ID}"):
            state = type(self).states.pop(0) if len(type(self).states) > 1 else type(self).states[0]
            body = {"id": RUN_ID, "state": state, "error": self.error if state == "failed" else None}
            self._send(200, "application/json", json.dumps(body).encode())
        else:
            self._send(200, "text/event-stream", b'retry: 1000\n\nevent: smoke.ping\ndata: {}\n\n')

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = {"id": RUN_ID, "state": "queued"} if self.path.endswith("/runs") else {
            "id": "00000000-0000-0000-0000-000000000001"}
        self._send(201, "application/json", json.dumps(body).encode())


def _smoke_with_runs(states: list[str], **overrides: str) -> subprocess.CompletedProcess:
    handler = type("Handler", (_Runs,), {"states": list(states)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = {"WORKERS": "true", "RUN_POLL_SECONDS": "1", "STREAM_SECONDS": "3", **overrides}
        return _run_smoke(f"http://127.0.0.1:{server.server_port}", **settings)
    finally:
        server.shutdown()


def test_smoke_script_waits_for_a_worker_run_to_succeed():
    result = _smoke_with_runs(["queued", "running", "running", "succeeded"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok: run {RUN_ID} succeeded" in result.stdout


def test_smoke_script_fails_when_the_worker_run_fails_and_says_why():
    result = _smoke_with_runs(["running", "failed"])
    assert result.returncode != 0 and f"run {RUN_ID} failed: model refused the brief" in result.stderr


def test_smoke_script_fails_when_the_worker_run_does_not_finish_in_time():
    result = _smoke_with_runs(["running"], RUN_WAIT_SECONDS="3")
    assert result.returncode != 0 and "did not finish within 3 s" in result.stderr


def test_smoke_script_skips_the_worker_run_without_workers():
    result = _smoke_with_runs(["failed"], WORKERS="false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted run" not in result.stdout


def test_smoke_stage_submits_a_worker_run_exactly_when_the_environment_has_workers():
    smoked = {s["Name"].removeprefix("Smoke-"): s for s in stages() if s["Name"].startswith("Smoke-")}
    assert FIRST.name in smoked
    for config in CHAIN:
        if config.name not in smoked:
            continue
        (action,) = smoked[config.name]["Actions"]
        variables = {v["name"]: v["value"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])}
        assert variables["WORKERS"] == ("true" if config.workers.enabled else "false")


@pytest.mark.slow
def test_smoke_script_passes_against_the_reference_service():
    sys.path.insert(0, str(REPO / "apprunner"))
    import localdev

    if localdev.find_pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL server binaries not found: {localdev.INSTALL_HINT}")
        pytest.skip(f"PostgreSQL server binaries not found: {localdev.INSTALL_HINT}")
    with localdev.LocalPostgres() as pg, localdev.LocalAws() as aws:
        aws.create_db_secret(pg.password)
        env = {**localdev.aws_env(aws), **localdev.contract_values(pg, aws)}
        proc, base = localdev.start_service(env, Path(tempfile.mkdtemp()) / "service.log")
        try:
            started = time.monotonic()
            result = _run_smoke(base)
        finally:
            localdev.stop_service(proc)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: one SSE event arrived" in result.stdout and time.monotonic() - started < 60


# ---- configuration --------------------------------------------------------------------------------

def _account(**changes) -> AccountConfig:
    return AccountConfig.model_validate({**ACCOUNT.model_dump(), **changes})


def test_github_enterprise_server_connects_through_its_host():
    host = "arn:aws:codeconnections:eu-west-1:123456789012:host/ghes-1a2b3c4d"
    with pytest.raises(ValidationError, match="source_host_arn"):
        _account(source_provider="GitHubEnterpriseServer")
    with pytest.raises(ValidationError, match="source_host_arn"):
        _account(source_host_arn=host)
    envs = load_all()
    data = to_data(pipeline.build(_account(source_provider="GitHubEnterpriseServer", source_host_arn=host),
                                  envs, {e.name: list(render.environment_data(e).values()) for e in envs}))
    assert props(one(data, "AWS::CodeConnections::Connection")[1]) == {
        "ConnectionName": naming.connection_name(ACCOUNT.app_name), "HostArn": host}


def test_pipeline_environments_must_be_known_and_unique():
    with pytest.raises(ValidationError, match="once"):
        _account(pipeline_environments=["dev", "dev"])
    with pytest.raises(ConfigError, match="unknown environment"):
        pipeline.build(_account(pipeline_environments=["dev", "qa9"]), load_all(), {})
