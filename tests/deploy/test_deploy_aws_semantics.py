"""Where real CloudFormation / App Runner / Secrets Manager differ from moto: botocore Stubber, no server.

Each test feeds the command the responses the real service gives (documented status flows, error codes and
reasons) and checks that the command neither hangs, leaves a change set behind, nor gives wrong advice.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.session
import pytest
from botocore.stub import Stubber

from generator.deploy import changeset, flow, preflight, progress, secrets, stream
from generator.deploy import status as status_command
from generator.deploy.changeset import Change, Ref, StackChanges
from generator.deploy.errors import DeployFailed, Interrupted, PreflightRefused
from generator.deploy.render_changes import render
from generator.deploy.targets import Target
from generator.deploy.ui import Ui

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/app-dev/11111111-2222-3333-4444-555555555555"
CS_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/adkit-1/aaaaaaaa-0000-0000-0000-000000000000"
NESTED_CS = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/adkit-1-Data/bbbbbbbb-0000-0000-0000-000000000000"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeAws:
    """The `Aws` interface with stubbed clients: every call must have been queued with `stub(service)`."""

    region, profile, url_suffix, endpoint_note = REGION, None, "amazonaws.com", ""

    def __init__(self) -> None:
        self._session = botocore.session.get_session()
        self._clients: dict[str, object] = {}
        self.stubbers: dict[str, Stubber] = {}

    def client(self, service: str):
        if service not in self._clients:
            client = self._session.create_client(service, region_name=REGION, endpoint_url="https://stubbed.invalid",
                                                 aws_access_key_id="x", aws_secret_access_key="x")
            self.stubbers[service] = Stubber(client)
            self.stubbers[service].activate()
            self._clients[service] = client
        return self._clients[service]

    advisory_client = client

    def stub(self, service: str) -> Stubber:
        self.client(service)
        return self.stubbers[service]

    def verify(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


@pytest.fixture
def aws(monkeypatch) -> FakeAws:
    monkeypatch.setenv("ADKIT_POLL_SECONDS", "0")
    return FakeAws()


def _ui() -> Ui:
    return Ui(out=io.StringIO(), err=io.StringIO(), inp=io.StringIO())


def _target(**kwargs) -> Target:
    base = dict(label="dev", kind="environment", app_name="app", stack_name="app-dev", account_id=ACCOUNT,
                region=REGION, config_file=Path("dev.toml"), template=Path("root.yaml"))
    return Target(**{**base, **kwargs})


def _change_set(status: str, **extra) -> dict:
    return {"ChangeSetId": CS_ID, "StackId": STACK_ID, "Status": status, **extra}


def _stack(status: str, **extra) -> dict:
    return {"Stacks": [{"StackName": "app-dev", "StackId": STACK_ID, "StackStatus": status,
                        "CreationTime": T0, **extra}]}


# ---- change sets ----------------------------------------------------------------------------------

def test_deploy_failed_nested_change_set_reports_the_innermost_reason(aws):
    root = _change_set("FAILED", StatusReason=f"Nested change set {NESTED_CS} was not successfully created: "
                                              "Currently in FAILED.")
    aws.stub("cloudformation").add_response("describe_change_set", {
        "ChangeSetId": NESTED_CS, "StackName": "app-dev-Data-1X2Y", "Status": "FAILED",
        "StatusReason": "Template format error: Unresolved resource dependencies [Key] in the Resources block"},
        {"ChangeSetName": NESTED_CS})

    reason = changeset.failure_reason(aws, root)

    assert reason == ("nested stack app-dev-Data-1X2Y: Template format error: Unresolved resource dependencies "
                      "[Key] in the Resources block")
    aws.verify()


def test_deploy_deleting_a_change_set_still_being_created_waits_then_deletes(aws):
    """Ctrl-C while CloudFormation creates the change set: DeleteChangeSet answers InvalidChangeSetStatus."""
    cfn = aws.stub("cloudformation")
    cfn.add_client_error("delete_change_set", "InvalidChangeSetStatus", "ChangeSet is in CREATE_IN_PROGRESS", 400)
    cfn.add_response("describe_change_set", _change_set("CREATE_IN_PROGRESS"), {"ChangeSetName": CS_ID})
    cfn.add_response("describe_change_set", _change_set("CREATE_COMPLETE"), {"ChangeSetName": CS_ID})
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS_ID})
    cfn.add_response("delete_stack", {}, {"StackName": STACK_ID})

    changeset.delete(aws, Ref(CS_ID, STACK_ID, "CREATE"), delete_empty_stack=True, poll=0)

    aws.verify()


def test_deploy_obsolete_change_set_is_deleted_not_executed(aws):
    """Someone updated the stack while the operator read the plan: ExecutionStatus OBSOLETE."""
    cfn = aws.stub("cloudformation")
    cfn.add_response("describe_change_set", _change_set("CREATE_COMPLETE", ExecutionStatus="OBSOLETE"),
                     {"ChangeSetName": CS_ID})
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS_ID})

    with pytest.raises(DeployFailed) as raised:
        flow._start(aws, _target(), _ui(), Ref(CS_ID, STACK_ID, "UPDATE"), 0)

    assert "updated by someone else" in raised.value.message and "adkit deploy dev" in raised.value.message
    aws.verify()   # no execute_change_set was queued: calling it would fail here


@pytest.mark.parametrize(("execution", "expected"), [("AVAILABLE", "nothing was changed"),
                                                     ("EXECUTE_IN_PROGRESS", "nothing was cancelled")])
def test_deploy_ctrl_c_at_execution_time_says_whether_cloudformation_took_the_change_set(aws, monkeypatch,
                                                                                         execution, expected):
    cfn = aws.stub("cloudformation")
    cfn.add_response("describe_change_set", _change_set("CREATE_COMPLETE", ExecutionStatus="AVAILABLE"),
                     {"ChangeSetName": CS_ID})

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(stream, "latest_event", interrupted)
    cfn.add_response("describe_change_set", _change_set("CREATE_COMPLETE", ExecutionStatus=execution),
                     {"ChangeSetName": CS_ID})
    if execution == "AVAILABLE":
        cfn.add_response("delete_change_set", {}, {"ChangeSetName": CS_ID})
    else:
        cfn.add_response("describe_stacks", _stack("UPDATE_IN_PROGRESS"), {"StackName": STACK_ID})

    with pytest.raises(Interrupted) as raised:
        flow._start(aws, _target(), _ui(), Ref(CS_ID, STACK_ID, "UPDATE"), 0)

    assert expected in raised.value.message and raised.value.exit_code == 130
    aws.verify()


def test_deploy_change_set_tree_pages_recurses_and_flags_dynamic_conditional_replacement(aws):
    cfn = aws.stub("cloudformation")
    nested = {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "Data", "ChangeSetId": NESTED_CS,
                                 "ResourceType": "AWS::CloudFormation::Stack", "Replacement": "False"}}
    topic = {"ResourceChange": {"Action": "Add", "LogicalResourceId": "Topic", "ResourceType": "AWS::SNS::Topic"}}
    cluster = {"ResourceChange": {
        "Action": "Modify", "LogicalResourceId": "Cluster", "ResourceType": "AWS::RDS::DBCluster",
        "Replacement": "Conditional", "Scope": ["Properties"],
        "Details": [{"Target": {"Attribute": "Properties", "Name": "DBSubnetGroupName",
                                "RequiresRecreation": "Always"},
                     "Evaluation": "Dynamic", "ChangeSource": "ParameterReference"}]}}
    cfn.add_response("describe_change_set", {**_change_set("CREATE_COMPLETE"), "Changes": [nested], "NextToken": "p2"},
                     {"ChangeSetName": CS_ID})
    cfn.add_response("describe_change_set", {**_change_set("CREATE_COMPLETE"), "Changes": [topic]},
                     {"ChangeSetName": CS_ID, "NextToken": "p2"})
    cfn.add_response("describe_change_set", {**_change_set("CREATE_COMPLETE"), "Changes": [cluster]},
                     {"ChangeSetName": NESTED_CS})

    tree = changeset.tree(aws, CS_ID, {})
    text = "\n".join(line.text for line in render(tree, "app-dev"))

    assert [c.logical_id for c in tree.changes] == ["Data", "Topic"]
    assert tree.children[0].changes[0].dynamic
    assert "Data/Cluster (AWS::RDS::DBCluster) MAY BE REPLACED (CloudFormation decides during the deploy" in text
    aws.verify()


def test_deploy_data_loss_warning_says_replaced_only_when_cloudformation_is_sure():
    tree = StackChanges("", [Change("Modify", "Bucket", "AWS::S3::Bucket", "True", "", ("BucketName",))])

    text = "\n".join(line.text for line in render(tree, "app-dev"))

    assert "Bucket (AWS::S3::Bucket) REPLACED" in text and "MAY BE" not in text


# ---- watching and final states ----------------------------------------------------------------------

def _watch(aws, timeout: float | None = None):
    watcher = stream.Watcher(aws, STACK_ID, {}, T0)
    return stream.watch(aws, watcher, progress.PlainView(_ui(), "app-dev"), 0, timeout=timeout)


def test_deploy_watch_waits_through_cleanup_in_progress(aws):
    cfn = aws.stub("cloudformation")
    for status in ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"):
        cfn.add_response("describe_stacks", _stack(status), {"StackName": STACK_ID})
        cfn.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": STACK_ID})
    cfn.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": STACK_ID})

    final = _watch(aws)

    assert final["StackStatus"] == "UPDATE_COMPLETE"
    aws.verify()


def test_deploy_watch_gives_up_at_its_time_limit_instead_of_spinning_forever(aws):
    cfn = aws.stub("cloudformation")
    cfn.add_response("describe_stacks", _stack("UPDATE_IN_PROGRESS"), {"StackName": STACK_ID})
    cfn.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": STACK_ID})

    with pytest.raises(stream.WatchTimeout, match="still UPDATE_IN_PROGRESS"):
        _watch(aws, timeout=0)


def _event(where: str, status: str, reason: str = "", seconds: int = 0, rtype: str = "AWS::RDS::DBCluster"):
    label, _, lid = where.rpartition("/")
    stack_level = lid == "app-dev"
    return stream.Event(f"{where}{status}{seconds}", label, lid, "AWS::CloudFormation::Stack" if stack_level
                          else rtype, status, reason, T0 + timedelta(seconds=seconds), "", stack_level)


def test_deploy_update_rollback_failed_says_continue_update_rollback_on_the_root():
    watcher = stream.Watcher(None, STACK_ID, {}, T0)
    watcher.events = [
        _event("app-dev", "UPDATE_IN_PROGRESS", "User Initiated", 0),
        _event("Data/Cluster", "UPDATE_FAILED", "Invalid DB cluster parameter group", 1),
        _event("app-dev", "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [Data].", 2),
        _event("Data/Key", "UPDATE_FAILED", "Key is pending deletion", 3, "AWS::KMS::Key"),
        _event("app-dev", "UPDATE_ROLLBACK_FAILED", "", 4),
    ]
    ui = _ui()

    error = flow._failure(_target(), {"StackStatus": "UPDATE_ROLLBACK_FAILED"}, watcher, ui)

    assert "continue-update-rollback --stack-name app-dev --region eu-west-1" in error.message
    assert "--resources-to-skip Data.Key" in error.message and "previous version" not in error.message
    assert "Data/Cluster" in ui.err_file.getvalue() and "failed to roll back" in ui.err_file.getvalue()


def test_deploy_rollback_failed_first_create_says_delete_the_stack():
    assert "delete-stack --stack-name app-dev" in flow.next_steps(_target(), "ROLLBACK_FAILED", [])
    assert "previous version" in flow.next_steps(_target(), "UPDATE_ROLLBACK_COMPLETE", [])


def test_deploy_preflight_refuses_rollback_failed_with_the_right_fix(aws):
    aws.stub("cloudformation").add_response("describe_stacks", _stack("ROLLBACK_FAILED"), {"StackName": "app-dev"})

    with pytest.raises(PreflightRefused) as raised:
        preflight.stack_state(aws, _target())

    assert "can only be deleted" in raised.value.message and "delete-stack --stack-name app-dev" in raised.value.message


# ---- secrets ----------------------------------------------------------------------------------------

def test_deploy_secret_shapes_match_their_readers():
    token, gemini = secrets.KNOWN["git-token"], secrets.KNOWN["gemini-api-key"]

    assert json.loads(secrets.secret_string(token, "ghp_abc")) == {"token": "ghp_abc"}   # {{resolve:...:token}}
    assert secrets.secret_string(token, '{"token": "ghp_abc"}') == '{"token": "ghp_abc"}'
    assert secrets.secret_string(gemini, "AIza-key") == "AIza-key"   # App Runner injects the whole string


SERVICE = f"arn:aws:apprunner:{REGION}:{ACCOUNT}:service/app-dev/0123456789abcdef0123456789abcdef"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app-dev-gemini-AbCdEf"
VALUE = "never-print-this-value"
OPERATION = "0f0e0d0c-0b0a-0908-0706-050403020100"


def _secrets_world(aws, *service_states: str) -> Ui:
    aws.stub("sts").add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": "arn:aws:iam::1:user/x",
                                                         "UserId": "x"})
    outputs = _stack("UPDATE_COMPLETE", Outputs=[{"OutputKey": "GeminiApiKeySecretArn", "OutputValue": SECRET_ARN},
                                                 {"OutputKey": "BackendServiceArn", "OutputValue": SERVICE}])
    aws.stub("cloudformation").add_response("describe_stacks", outputs, {"StackName": "app-dev"})
    aws.stub("secretsmanager").add_response("put_secret_value", {"ARN": SECRET_ARN},
                                            {"SecretId": SECRET_ARN, "SecretString": VALUE})
    aws.stub("cloudformation").add_response("describe_stacks", outputs, {"StackName": "app-dev"})
    for state in service_states:
        aws.stub("apprunner").add_response("describe_service", {"Service": {
            "ServiceName": "app-dev", "ServiceId": "0123456789abcdef0123456789abcdef", "ServiceArn": SERVICE,
            "Status": state,
            "CreatedAt": T0, "UpdatedAt": T0, "SourceConfiguration": {}, "InstanceConfiguration": {},
            "NetworkConfiguration": {}, "ObservabilityConfiguration": {"ObservabilityEnabled": False},
            "AutoScalingConfigurationSummary": {}}}, {"ServiceArn": SERVICE})
    return _ui()


def test_deploy_secrets_set_waits_while_app_runner_is_busy_then_deploys(aws):
    ui = _secrets_world(aws, "OPERATION_IN_PROGRESS", "RUNNING")
    aws.stub("apprunner").add_response("start_deployment", {"OperationId": OPERATION}, {"ServiceArn": SERVICE})

    code = secrets.run(aws, _target(), ui, "gemini-api-key", reader=lambda _ui, _name: VALUE)

    assert code == 0
    err = ui.err_file.getvalue()
    assert "busy with another operation" in err and f"Started App Runner deployment {OPERATION}" in err
    assert VALUE not in err + ui.out_file.getvalue()
    aws.verify()


def _no_deployment_started(aws, ui: Ui) -> str:
    """Run `secrets set`, which must fail after storing the value; its message, which says the value is stored
    and never holds it. Every queued response was used."""
    with pytest.raises(DeployFailed) as raised:
        secrets.run(aws, _target(), ui, "gemini-api-key", reader=lambda _ui, _name: VALUE)

    message = raised.value.message
    assert "value is stored" in message and VALUE not in message
    aws.verify()
    return message


def test_deploy_secrets_set_on_a_paused_service_says_the_value_is_stored_and_what_to_run(aws):
    message = _no_deployment_started(aws, _secrets_world(aws, "PAUSED"))

    assert "resume-service" in message and "start-deployment" in message


ECS_SERVICE = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/app-dev-backend/app-dev-backend"


def _ecs_secrets_world(aws) -> Ui:
    """An ECS Express Mode backend: the stack's BackendServiceArn is an ECS service ARN."""
    aws.stub("sts").add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": "arn:aws:iam::1:user/x",
                                                         "UserId": "x"})
    outputs = _stack("UPDATE_COMPLETE", Outputs=[{"OutputKey": "GeminiApiKeySecretArn", "OutputValue": SECRET_ARN},
                                                 {"OutputKey": "BackendServiceArn", "OutputValue": ECS_SERVICE},
                                                 {"OutputKey": "BackendPlatform", "OutputValue": "ecs-express"}])
    aws.stub("cloudformation").add_response("describe_stacks", outputs, {"StackName": "app-dev"})
    aws.stub("secretsmanager").add_response("put_secret_value", {"ARN": SECRET_ARN},
                                            {"SecretId": SECRET_ARN, "SecretString": VALUE})
    aws.stub("cloudformation").add_response("describe_stacks", outputs, {"StackName": "app-dev"})
    return _ui()


def test_deploy_secrets_set_forces_a_new_ecs_deployment_for_an_express_backend(aws):
    ui = _ecs_secrets_world(aws)
    aws.stub("ecs").add_response("update_service", {"service": {"serviceArn": ECS_SERVICE, "deployments": [
        {"id": "ecs-svc/1111", "status": "PRIMARY"}, {"id": "ecs-svc/0000", "status": "ACTIVE"}]}},
        {"cluster": "app-dev-backend", "service": ECS_SERVICE, "forceNewDeployment": True})

    code = secrets.run(aws, _target(), ui, "gemini-api-key", reader=lambda _ui, _name: VALUE)

    assert code == 0
    err = ui.err_file.getvalue()
    assert "Started ECS deployment ecs-svc/1111" in err and "apprunner" not in err.lower()
    assert VALUE not in err + ui.out_file.getvalue()
    aws.verify()  # no App Runner call was made: every queued response was used, none was missing


def test_deploy_secrets_set_says_the_value_is_stored_when_ecs_refuses_the_deployment(aws):
    ui = _ecs_secrets_world(aws)
    aws.stub("ecs").add_client_error("update_service", "ServiceNotActiveException", "Service was not ACTIVE.")

    message = _no_deployment_started(aws, ui)

    assert "update-service" in message and "--force-new-deployment" in message


@pytest.mark.parametrize(("arn", "ecs"), [
    (ECS_SERVICE, True), (SERVICE, False), (f"arn:aws-cn:ecs:cn-north-1:{ACCOUNT}:service/c/s", True),
    (f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/c", False)])
def test_deploy_secrets_tells_ecs_service_arns_from_app_runner_ones(arn, ecs):
    assert secrets.is_ecs_service(arn) is ecs


@pytest.mark.parametrize("platform", ["apprunner", "ecs-express"])
def test_deploy_status_shows_the_backend_platform_the_stack_reports(aws, platform):
    aws.stub("sts").add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": "arn:aws:iam::1:user/x",
                                                         "UserId": "x"})
    aws.stub("cloudformation").add_response("describe_stacks", _stack("UPDATE_COMPLETE", Outputs=[
        {"OutputKey": "BackendPlatform", "OutputValue": platform},
        {"OutputKey": "BackendUrl", "OutputValue": "https://backend.example"}]), {"StackName": "app-dev"})
    aws.stub("cloudformation").add_response("list_stack_resources", {"StackResourceSummaries": []},
                                            {"StackName": STACK_ID})
    ui = _ui()

    assert status_command.run(aws, _target(), ui) == 0

    assert f"backend platform: {platform}" in ui.err_file.getvalue()
    assert f"BackendPlatform  {platform}" in ui.out_file.getvalue()
    aws.verify()


# ---- cost-allocation tags: budgets read 0 USD until activated; a warning, never a refusal ----------------

def _env_target() -> Target:
    return Target(label="dev", kind="environment", app_name="app", stack_name="app-dev", account_id=ACCOUNT,
                  region=REGION, template=Path("templates/dev/root.yaml"), config_file=Path("dev.toml"),
                  production=False, protected=False, parameters={}, tags={})


def _ui_and_err() -> tuple[Ui, io.StringIO]:
    err = io.StringIO()
    return Ui(out=io.StringIO(), err=err, inp=io.StringIO()), err


def test_deploy_warns_with_the_command_when_cost_allocation_tags_are_inactive():
    aws, (ui, err) = FakeAws(), _ui_and_err()
    aws.stub("ce").add_response("list_cost_allocation_tags", {"CostAllocationTags": [
        {"TagKey": "Application", "Type": "UserDefined", "Status": "Active"},
        {"TagKey": "Environment", "Type": "UserDefined", "Status": "Inactive"},
    ]}, {"TagKeys": ["Application", "Environment", "Component", "ManagedBy"], "Type": "UserDefined"})
    inactive = preflight.cost_allocation_tags(aws, _env_target(), ui)
    assert inactive == ["Environment", "Component", "ManagedBy"]
    text = " ".join(err.getvalue().split())
    assert "warning: cost-allocation tags not active: Environment, Component, ManagedBy" in text
    assert "TagKey=Environment,Status=Active TagKey=Component,Status=Active TagKey=ManagedBy,Status=Active" in text
    aws.verify()


def test_deploy_is_silent_when_every_cost_allocation_tag_is_active():
    aws, (ui, err) = FakeAws(), _ui_and_err()
    aws.stub("ce").add_response("list_cost_allocation_tags", {"CostAllocationTags": [
        {"TagKey": k, "Type": "UserDefined", "Status": "Active"}
        for k in ("Application", "Component", "Environment", "ManagedBy")]})
    assert preflight.cost_allocation_tags(aws, _env_target(), ui) == []
    assert err.getvalue() == ""


def test_deploy_goes_on_when_the_cost_allocation_check_is_denied():
    aws, (ui, err) = FakeAws(), _ui_and_err()
    aws.stub("ce").add_client_error("list_cost_allocation_tags", "AccessDeniedException", "not authorized")
    assert preflight.cost_allocation_tags(aws, _env_target(), ui) == []
    text = " ".join(err.getvalue().split())
    assert "Could not check the cost-allocation tags" in text
    assert "AccessDeniedException: not authorized" in text and "ce:ListCostAllocationTags" in text
