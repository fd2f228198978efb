"""End-to-end: the real `adkit` command against a local moto server (see conftest.py and deploy_moto_patch.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import deploy_moto_patch
import pytest

from generator.deploy import preflight
from generator.ops.cost import keeping_cost

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-VALUE-never-printed"


def _deployed(kit, env: str = "dev", tag: str = "v1") -> None:
    kit.bootstrap()
    result = kit.run("deploy", env, "--image-tag", tag, "--yes", stdin=f"{env}\n")
    assert result.code == 0, result.text


def _nested_resources(kit, env: str, logical_id: str) -> set[str]:
    physical = kit.cfn.describe_stack_resource(StackName=kit.stack_name(env), LogicalResourceId=logical_id)
    inner = physical["StackResourceDetail"]["PhysicalResourceId"]
    return {r["LogicalResourceId"] for r in kit.cfn.list_stack_resources(StackName=inner)["StackResourceSummaries"]}


def test_deploy_bootstrap_then_first_deploy(kit):
    boot = kit.run("bootstrap", "--yes")
    assert boot.code == 0, boot.text
    assert "ArtifactBucketName" in boot.out and "EcrRepositoryUri" in boot.out
    boot_stack = kit.cfn.describe_stacks(StackName=f"{kit.app}-bootstrap")["Stacks"][0]
    assert boot_stack["EnableTerminationProtection"] is True
    kit.push_image("v1")

    result = kit.run("deploy", "dev", "--image-tag", "v1", "--yes")

    assert result.code == 0, result.text
    stack = kit.stack("dev")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {"ImageTag": "v1"}
    assert {t["Key"]: t["Value"] for t in stack["Tags"]}["Environment"] == "dev"
    assert _nested_resources(kit, "dev", "Network") == {"Queue", "Flag"}
    # outputs are data: stdout; progress uses the human descriptions from Metadata, on stderr
    assert "BackendUrl" in result.out and "ContentBucketName" in result.out
    assert "CREATE_COMPLETE" not in result.out
    assert "Work queue [Network/Queue]" in result.err
    # children were uploaded under content hashes, the root was sent inline
    artifact = kit.outputs("bootstrap")["ArtifactBucketName"]
    keys = [o["Key"] for o in kit.session.client("s3").list_objects_v2(Bucket=artifact)["Contents"]]
    assert len(keys) == 3 and all(k.startswith("templates/dev/") and len(k) == len("templates/dev/") + 64 + 5
                                  for k in keys), keys


def test_deploy_again_without_changes_exits_0_and_leaves_no_change_set(kit):
    _deployed(kit)

    result = kit.run("deploy", "dev", "--yes")   # no --image-tag: the deployed one is reused

    assert result.code == 0, result.text
    assert "No changes" in result.err
    assert "0 uploaded, 3 unchanged" in result.err
    assert kit.change_sets("dev") == []
    stack = kit.stack("dev")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert stack["Parameters"] == [{"ParameterKey": "ImageTag", "ParameterValue": "v1"}]
    assert "BackendUrl" in result.out


def test_deploy_update_shows_adds_modifies_removes(kit):
    _deployed(kit)
    kit.use_variant("update")   # network.yaml: Queue modified, Flag removed, DeadLetterQueue added

    result = kit.run("deploy", "dev", "--yes")

    assert result.code == 0, result.text
    section = result.err[result.err.index("  Network: "):result.err.index("Summary:")]
    assert "+ Add     Dead-letter queue [DeadLetterQueue]" in section
    assert "~ Modify  Work queue [Queue] (VisibilityTimeout)" in section
    assert "- Remove  Flag" in section
    assert "Summary: 1 to add, 1 to modify, 1 to remove" in result.err
    assert "WARNING" not in result.err
    assert kit.stack("dev")["StackStatus"] == "UPDATE_COMPLETE"
    assert _nested_resources(kit, "dev", "Network") == {"Queue", "DeadLetterQueue"}
    assert kit.change_sets("dev") == []


def test_deploy_plan_shows_image_change_and_stateful_replacement_then_leaves_nothing(kit):
    _deployed(kit)
    kit.use_variant("replace")   # data.yaml: a new BucketName replaces the content bucket

    result = kit.run("plan", "dev", "--image-tag", "v2")

    assert result.code == 0, result.text
    plan = result.out   # the plan is the command's data: stdout
    assert "~ Modify  Running image (stands in for the App Runner service) [Image]" in plan
    assert "Content bucket [ContentBucket] (BucketName)" in plan and "REPLACED" in plan
    assert "Replacements" in plan and "! Data/ContentBucket" in plan
    assert "DATA LOSS" in plan and "Data/ContentBucket (AWS::S3::Bucket) REPLACED" in plan
    assert kit.change_sets("dev") == []
    stack = kit.stack("dev")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert stack["Parameters"] == [{"ParameterKey": "ImageTag", "ParameterValue": "v1"}]


def test_deploy_nested_failure_exits_1_and_names_resource_and_reason(kit):
    _deployed(kit)
    kit.use_variant("broken")   # backend.yaml adds an SSM parameter under the reserved /aws/ path

    result = kit.run("deploy", "dev", "--yes")

    assert result.code == 1, result.text
    cause = result.err[result.err.index("root cause"):]
    assert "Backend/Migration: " in cause and "(AWS::SSM::Parameter) CREATE_FAILED" in cause
    assert "No access to reserved parameter name" in cause
    assert "UPDATE_ROLLBACK_COMPLETE" in result.err
    assert result.out == ""   # no outputs after a failure
    assert kit.stack("dev")["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert _nested_resources(kit, "dev", "Backend") == {"Image"}


def test_deploy_failed_first_create_is_cleaned_up_by_the_next_deploy(kit):
    kit.bootstrap()
    kit.use_variant("broken")
    failed = kit.run("deploy", "dev", "--image-tag", "v1", "--yes")
    assert failed.code == 1, failed.text
    assert kit.stack("dev")["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "deletes the rolled-back stack" in failed.err
    kit.restore("dev", "backend.yaml")

    result = kit.run("deploy", "dev", "--image-tag", "v1", "--yes")

    assert result.code == 0, result.text
    assert "is ROLLBACK_COMPLETE" in result.err and "Deleted the dead stack" in result.err
    assert kit.stack("dev")["StackStatus"] == "CREATE_COMPLETE"


def _failed_first_create(kit) -> None:
    kit.bootstrap()
    kit.use_variant("broken")
    assert kit.run("deploy", "dev", "--image-tag", "v1", "--yes").code == 1
    assert kit.stack("dev")["StackStatus"] == "ROLLBACK_COMPLETE"
    kit.restore("dev", "backend.yaml")


def test_plan_never_deletes_a_dead_stack_and_shows_why_it_died(kit):
    _failed_first_create(kit)
    stack_id = kit.stack("dev")["StackId"]

    result = kit.run("plan", "dev", "--image-tag", "v1")

    assert result.code == 0, result.text
    assert kit.stack("dev")["StackStatus"] == "ROLLBACK_COMPLETE" and kit.stack("dev")["StackId"] == stack_id
    cause = result.err[result.err.index("root cause of the failed create"):]
    assert "Backend/Migration: " in cause and "(AWS::SSM::Parameter) CREATE_FAILED" in cause
    assert "No access to reserved parameter name" in cause
    assert "would first delete" in result.err and "nothing was changed" in result.err
    assert kit.change_sets("dev") == []


def test_deploy_asks_before_deleting_a_dead_stack_and_declining_changes_nothing(kit):
    _failed_first_create(kit)
    stack_id = kit.stack("dev")["StackId"]

    declined = kit.run("deploy", "dev", "--image-tag", "v1", stdin="n\n")

    assert declined.code == 4, declined.text
    assert "Backend/Migration" in declined.err   # the root cause is shown before the question
    assert "Delete tst" in declined.err and "not deleted" in declined.err and "nothing was changed" in declined.err
    assert kit.stack("dev")["StackId"] == stack_id and kit.stack("dev")["StackStatus"] == "ROLLBACK_COMPLETE"


def test_deploy_declined_after_deleting_the_dead_stack_says_so(kit):
    _failed_first_create(kit)

    result = kit.run("deploy", "dev", "--image-tag", "v1", stdin="y\nn\n")

    assert result.code == 4, result.text
    assert "Deleted the dead stack" in result.err
    assert "the dead stack" in result.err and "was deleted as confirmed; nothing else was changed" in result.err
    assert "nothing was changed" not in result.err
    assert kit.stack("dev") is None


def test_deploy_declined_leaves_no_change_set_and_no_empty_stack(kit):
    kit.bootstrap()

    declined = kit.run("deploy", "dev", "--image-tag", "v1", stdin="n\n")
    no_answer = kit.run("deploy", "dev", "--image-tag", "v1", stdin="")   # non-interactive, no --yes

    for result in (declined, no_answer):
        assert result.code == 4, result.text
        assert "Execute this change set" in result.err
        assert "nothing was changed" in result.err
    assert "--yes" in no_answer.err
    assert kit.stack("dev") is None
    assert kit.change_sets("dev") == []


def test_deploy_wrong_account_is_refused_before_any_write(kit):
    kit.bootstrap()
    s3 = kit.session.client("s3")
    before = {b["Name"]: s3.list_objects_v2(Bucket=b["Name"]).get("KeyCount", 0) for b in s3.list_buckets()["Buckets"]}
    kit.set_config("dev", 'account_id = "123456789012"', 'account_id = "111111111111"')

    result = kit.run("deploy", "dev", "--image-tag", "v1", "--yes")

    assert result.code == 3, result.text
    assert "account 123456789012" in result.err and "account_id = 111111111111" in result.err
    assert "dev.toml" in result.err
    assert kit.stack("dev") is None
    assert kit.change_sets("dev") == []
    after = {b["Name"]: s3.list_objects_v2(Bucket=b["Name"]).get("KeyCount", 0) for b in s3.list_buckets()["Buckets"]}
    assert after == before   # not even the package step ran


def test_deploy_wrong_region_is_refused(kit):
    kit.bootstrap()

    result = kit.run("deploy", "dev", "--image-tag", "v1", "--yes", "--region", "us-east-1")

    assert result.code == 3, result.text
    assert "region us-east-1" in result.err and "region = eu-west-1" in result.err


def test_deploy_missing_bootstrap_is_detected_with_a_helpful_message(kit):
    result = kit.run("deploy", "dev", "--image-tag", "v1", "--yes")

    assert result.code == 3, result.text
    assert f"bootstrap stack {kit.app}-bootstrap not found" in result.err
    assert "run `adkit bootstrap`" in result.err
    assert kit.stack("dev") is None


def test_deploy_refuses_unknown_image_latest_and_a_first_deploy_without_tag(kit):
    kit.bootstrap()

    missing = kit.run("deploy", "dev", "--image-tag", "never-pushed", "--yes")
    latest = kit.run("deploy", "dev", "--image-tag", "latest", "--yes")
    untagged = kit.run("deploy", "dev", "--yes")

    assert missing.code == 3 and "never-pushed not found" in missing.err, missing.text
    assert latest.code == 2 and "'latest' refused" in latest.err, latest.text
    assert untagged.code == 2 and "pass --image-tag" in untagged.err, untagged.text
    assert kit.stack("dev") is None


def test_deploy_refuses_the_example_domain(kit):
    path = kit.config_dir / "environments" / "dev.toml"
    path.write_text(path.read_text() + '\n[frontend.custom_domain]\nname = "app.example.com"\n')

    result = kit.run("deploy", "dev", "--image-tag", "v1", "--yes")

    assert result.code == 2, result.text
    assert "frontend.custom_domain.name" in result.err and "dev.toml" in result.err


def test_deploy_secrets_set_stores_the_value_without_printing_it(kit, caplog):
    _deployed(kit)
    secretsmanager = kit.session.client("secretsmanager")
    secretsmanager.create_secret(Name=f"{kit.app}-dev/gemini-api-key")
    secretsmanager.create_secret(Name=f"{kit.app}-bootstrap/git-token")

    gemini = kit.run("secrets", "set", "dev", "gemini-api-key", stdin=SECRET + "\n")
    token = kit.run("secrets", "set", "git-token", stdin="tok-" + SECRET)   # account level: no environment

    for result in (gemini, token):
        assert result.code == 0, result.text
        assert SECRET not in result.out + result.err
    assert SECRET not in caplog.text
    assert "no App Runner deployment was started" in gemini.err   # the fixture stack has no BackendServiceArn
    value = secretsmanager.get_secret_value(SecretId=f"{kit.app}-dev/gemini-api-key")["SecretString"]
    assert value == SECRET
    # the frontend reads {{resolve:secretsmanager:...:SecretString:token}}: the token is stored as JSON
    stored = secretsmanager.get_secret_value(SecretId=f"{kit.app}-bootstrap/git-token")["SecretString"]
    assert json.loads(stored) == {"token": "tok-" + SECRET}


def test_deploy_secrets_set_lists_the_declared_names_when_given_another(kit):
    result = kit.run("secrets", "set", "dev", "openai-api-key", stdin="value\n")

    assert result.code == 2, result.text
    assert "unknown secret 'openai-api-key'" in result.err
    assert "gemini-api-key, git-token, payments-api-key" in result.err and "backend.secrets" in result.err


def test_deploy_secrets_set_refuses_an_environment_without_a_name(kit):
    result = kit.run("secrets", "set", "dev", stdin="value\n")

    assert result.code == 2, result.text
    assert "missing NAME" in result.err


def _worker_service(kit, env: str = "dev") -> tuple[str, str]:
    """The ECS cluster and service that the `workers` variant's root names in its outputs."""
    ecs = kit.session.client("ecs")
    cluster, service = f"{kit.stack_name(env)}-workers", "worker"
    ecs.create_cluster(clusterName=cluster)
    task = ecs.register_task_definition(
        family=f"{kit.app}-worker", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="512",
        memory="1024", containerDefinitions=[{"name": "worker", "image": "backend:v1", "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=task, desiredCount=1)
    return cluster, service


def _deployment_ids(kit, cluster: str, service: str) -> list[str]:
    (described,) = kit.session.client("ecs").describe_services(cluster=cluster, services=[service])["services"]
    return [d["id"] for d in described["deployments"]]


def test_deploy_secrets_set_starts_a_new_deployment_of_the_worker_service(kit, caplog):
    kit.use_variant("workers")   # root.yaml outputs WorkerClusterName and WorkerServiceName
    _deployed(kit)
    kit.session.client("secretsmanager").create_secret(Name=f"{kit.app}-dev/gemini-api-key")
    cluster, service = _worker_service(kit)
    before = _deployment_ids(kit, cluster, service)

    result = kit.run("secrets", "set", "dev", "gemini-api-key", stdin=SECRET + "\n")

    assert result.code == 0, result.text
    assert SECRET not in result.out + result.err and SECRET not in caplog.text
    after = _deployment_ids(kit, cluster, service)
    assert before and after and after != before   # forceNewDeployment: a new primary deployment
    assert f"new deployment of the worker service {service}" in result.err


def test_deploy_secrets_set_without_workers_leaves_ecs_alone(kit):
    _deployed(kit)   # the plain fixture root has no worker outputs
    kit.session.client("secretsmanager").create_secret(Name=f"{kit.app}-dev/gemini-api-key")
    cluster, service = _worker_service(kit)
    before = _deployment_ids(kit, cluster, service)

    result = kit.run("secrets", "set", "dev", "gemini-api-key", stdin=SECRET + "\n")

    assert result.code == 0, result.text
    assert _deployment_ids(kit, cluster, service) == before
    assert "worker service" not in result.err


def test_deploy_secrets_set_names_the_command_when_the_worker_service_is_missing(kit):
    kit.use_variant("workers")
    _deployed(kit)
    kit.session.client("secretsmanager").create_secret(Name=f"{kit.app}-dev/gemini-api-key")

    result = kit.run("secrets", "set", "dev", "gemini-api-key", stdin=SECRET + "\n")   # no cluster/service

    assert result.code != 0, result.text
    assert "is stored, but the worker service was not redeployed" in result.err
    assert "aws ecs update-service" in result.err and "--force-new-deployment" in result.err


def test_deploy_secrets_set_refuses_an_empty_value(kit):
    _deployed(kit)

    result = kit.run("secrets", "set", "dev", "gemini-api-key", stdin="\n")

    assert result.code == 2, result.text
    assert "empty value" in result.err


def test_deploy_destroy_prod_is_refused(kit):
    result = kit.run("destroy", "prod", "--yes")

    assert result.code == 3, result.text
    assert "destroy prod refused" in result.err and "production = true" in result.err


def test_deploy_prod_always_confirms_and_is_protected(kit):
    kit.bootstrap()

    declined = kit.run("deploy", "prod", "--image-tag", "v1", "--yes", stdin="yes\n")
    assert declined.code == 4, declined.text
    assert "--yes does not apply" in declined.err
    assert kit.stack("prod") is None

    result = kit.run("deploy", "prod", "--image-tag", "v1", "--yes", stdin="prod\n")

    assert result.code == 0, result.text
    stack = kit.stack("prod")
    assert stack["EnableTerminationProtection"] is True
    root_policy = json.loads(kit.cfn.get_stack_policy(StackName=kit.stack_name("prod"))["StackPolicyBody"])
    denied = [s for s in root_policy["Statement"] if s["Effect"] == "Deny"]
    assert {"Effect": "Deny", "Principal": "*", "Action": ["Update:Replace", "Update:Delete"],
            "Resource": ["LogicalResourceId/Data"]} in denied
    data = kit.cfn.describe_stack_resource(StackName=kit.stack_name("prod"), LogicalResourceId="Data")
    data_policy = json.loads(kit.cfn.get_stack_policy(
        StackName=data["StackResourceDetail"]["PhysicalResourceId"])["StackPolicyBody"])
    by_type = next(s for s in data_policy["Statement"] if "Condition" in s)
    assert by_type["Effect"] == "Deny" and "AWS::S3::Bucket" in by_type["Condition"]["StringEquals"]["ResourceType"]
    assert "AWS::RDS::DBCluster" in by_type["Condition"]["StringEquals"]["ResourceType"]

    refused = kit.run("destroy", "prod", "--yes")
    assert refused.code == 3
    assert kit.stack("prod")["StackStatus"] == "CREATE_COMPLETE"


def test_deploy_prod_without_changes_puts_missing_guard_rails_back(kit):
    kit.bootstrap()
    assert kit.run("deploy", "prod", "--image-tag", "v1", stdin="prod\n").code == 0
    name = kit.stack_name("prod")
    kit.cfn.update_termination_protection(StackName=name, EnableTerminationProtection=False)
    kit.cfn.set_stack_policy(StackName=name, StackPolicyBody=json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}]}))

    result = kit.run("deploy", "prod")   # no changes: no confirmation, but the guard rails come back

    assert result.code == 0, result.text
    assert "No changes" in result.err and "Protected" in result.err
    assert kit.stack("prod")["EnableTerminationProtection"] is True
    policy = json.loads(kit.cfn.get_stack_policy(StackName=name)["StackPolicyBody"])
    assert any(s["Effect"] == "Deny" for s in policy["Statement"])


def test_deploy_status_shows_states_and_outputs(kit):
    missing = kit.run("status", "dev")
    _deployed(kit)

    result = kit.run("status", "dev")
    as_json = json.loads(kit.run("status", "dev", "--json").out)

    assert missing.code == 3 and "not deployed" in missing.err
    assert result.code == 0, result.text
    assert "CREATE_COMPLETE" in result.err and "Network" in result.err
    assert "BackendUrl" in result.out
    assert as_json["StackStatus"] == "CREATE_COMPLETE"
    assert set(as_json["NestedStacks"]) == {"Network", "Data", "Backend"}
    assert as_json["Outputs"]["BackendUrl"].startswith("https://")


def test_deploy_destroy_dev_lists_retained_data_and_asks(kit):
    _deployed(kit)
    bucket = kit.outputs("dev")["ContentBucketName"]

    declined = kit.run("destroy", "dev", stdin="no\n")
    assert declined.code == 4 and kit.stack("dev") is not None

    result = kit.run("destroy", "dev", stdin="dev\n")

    assert result.code == 0, result.text
    assert "Data/ContentBucket: Content bucket (AWS::S3::Bucket)" in result.err
    assert f"name: {bucket}" in result.err                                  # the physical name to find it by
    assert f"costs to keep: {keeping_cost('AWS::S3::Bucket', 'eu-west-1')}" in result.err   # from prices.json
    assert "NOT deleted" in result.err
    assert kit.stack("dev") is None
    assert bucket in {b["Name"] for b in kit.session.client("s3").list_buckets()["Buckets"]}   # retained


def test_deploy_pipeline_needs_bootstrap_then_deploys(kit):
    refused = kit.run("pipeline", "--yes")
    kit.bootstrap()

    result = kit.run("pipeline", "--yes")

    assert refused.code == 3 and "adkit bootstrap" in refused.err
    assert result.code == 0, result.text
    assert "PipelineTopicArn" in result.out


def test_deploy_busy_stack_is_refused_and_a_never_executed_create_is_cleaned_up(kit):
    _deployed(kit)
    cfn = kit.cfn
    body = cfn.get_template(StackName=kit.stack_name("dev"))["TemplateBody"]
    body = json.loads(body) if isinstance(body, str) else body
    body["Resources"]["SecondTopic"] = {"Type": "AWS::SNS::Topic"}
    # Long enough that the deploy's preflight surely runs while the update is in progress, even on a loaded machine.
    deploy_moto_patch.SETTINGS["resource_seconds"] = 3.0
    try:
        change = cfn.create_change_set(StackName=kit.stack_name("dev"), ChangeSetName="manual", ChangeSetType="UPDATE",
                                       TemplateBody=json.dumps(body),
                                       Parameters=[{"ParameterKey": "ImageTag", "UsePreviousValue": True}])
        cfn.execute_change_set(ChangeSetName=change["Id"])
        busy = kit.run("deploy", "dev", "--yes")
    finally:
        deploy_moto_patch.SETTINGS["resource_seconds"] = 0.0
    _wait_settled(kit, "dev")
    assert busy.code == 3, busy.text
    assert "is busy (UPDATE_IN_PROGRESS)" in busy.err and "cancel-update-stack" in busy.err

    cfn.create_change_set(StackName=kit.stack_name("prod"), ChangeSetName="abandoned", ChangeSetType="CREATE",
                          TemplateBody=json.dumps({"Resources": {"T": {"Type": "AWS::SNS::Topic"}}}))
    recent = kit.run("deploy", "prod", "--image-tag", "v1", stdin="prod\nprod\n")   # may be another operator's
    assert recent.code == 3, recent.text
    assert "another run seems to be in progress" in recent.err and "delete-change-set" in recent.err
    assert kit.stack("prod")["StackStatus"] == "REVIEW_IN_PROGRESS"

    kit.monkeypatch.setattr(preflight, "OTHER_RUN_MINUTES", 0)   # the same change set, now counted as abandoned
    result = kit.run("deploy", "prod", "--image-tag", "v1", stdin="prod\nprod\n")
    assert result.code == 0, result.text
    assert "never executed" in result.err and "Deleted the dead stack" in result.err
    assert kit.stack("prod")["StackStatus"] == "CREATE_COMPLETE"


def _wait_settled(kit, env: str) -> None:
    for _ in range(400):
        if not kit.stack(env)["StackStatus"].endswith("_IN_PROGRESS"):
            return
        time.sleep(0.05)


# `adkit` in a child process with the freshness guard off, as the kit fixture turns it off in-process: the
# fixture templates stand in for rendered ones (moto cannot create App Runner, Amplify, ...).
STAND_IN_ADKIT = ("import sys; from generator.deploy import guards; "
                  "guards.stale_templates = lambda *args, **kwargs: []; "
                  "from generator.cli import main; sys.exit(main(sys.argv[1:]))")


def test_deploy_ctrl_c_leaves_the_stack_running_and_prints_next_steps(kit, moto_server):
    kit.bootstrap()
    deploy_moto_patch.SETTINGS["resource_seconds"] = 0.4
    argv = [sys.executable, "-c", STAND_IN_ADKIT, "deploy", "dev", "--image-tag", "v1", "--yes",
            "--config-dir", str(kit.config_dir), "--templates-dir", str(kit.templates_dir)]
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=dict(os.environ), cwd=os.getcwd())
        lines: list[str] = []
        seen = threading.Event()

        def read() -> None:
            for line in process.stderr:
                lines.append(line)
                if "CREATE_IN_PROGRESS" in line and "[Network" in line:
                    seen.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert seen.wait(30), "".join(lines)
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        reader.join(5)
    finally:
        deploy_moto_patch.SETTINGS["resource_seconds"] = 0.0
    err = "".join(lines)
    assert code == 130, err
    assert "interrupted while" in err and "CREATE_IN_PROGRESS" in err
    assert "nothing was cancelled" in err
    assert "adkit status dev" in err and "aws cloudformation cancel-update-stack" in err
    _wait_settled(kit, "dev")
    assert kit.stack("dev")["StackStatus"] == "CREATE_COMPLETE"   # CloudFormation carried on


def test_deploy_plan_of_the_rendered_dev_templates(kit):
    """The real `make render` layout (8 nested stacks, relative TemplateURLs) packages and plans."""
    from generator.config import REPO_ROOT

    real = REPO_ROOT / "templates" / "dev"
    if not (real / "root.yaml").is_file():
        if os.environ.get("CI"):
            pytest.fail("templates/dev not rendered (run `make render`)")
        pytest.skip("templates/dev not rendered")
    shutil.rmtree(kit.templates_dir / "dev")
    shutil.copytree(real, kit.templates_dir / "dev")
    kit.bootstrap()   # the fixture bootstrap: moto cannot create the real one
    children = [p.name for p in real.glob("*.yaml") if p.name != "root.yaml"]

    result = kit.run("plan", "dev", "--image-tag", "v1")

    assert result.code == 0, result.text
    assert f"Packaged nested templates: {len(children)} uploaded, 0 unchanged" in result.err
    headings = [line for line in result.out.splitlines() if line.startswith("  ") and not line.startswith("    ")]
    assert len(headings) == len(children) + 1, headings   # the root and every nested stack
    changes = [line for line in result.out.splitlines() if line.startswith("    + Add")]
    assert changes and all("[" in line for line in changes), "a resource without a description in Metadata"
    assert kit.stack("dev") is None and kit.change_sets("dev") == []


def test_deploy_warns_while_the_git_token_is_still_the_placeholder(kit):
    kit.bootstrap()
    secretsmanager = kit.session.client("secretsmanager")
    # what the bootstrap stack creates: one version, a generated placeholder
    secretsmanager.create_secret(Name=f"{kit.app}-bootstrap/git-token", SecretString='{"token": "generated"}')

    first = kit.run("deploy", "dev", "--image-tag", "v1", "--yes")
    assert first.code == 0, first.text
    assert "still holds the placeholder" in first.err and "adkit secrets set git-token" in first.err

    assert kit.run("secrets", "set", "git-token", stdin="tok-" + SECRET).code == 0
    second = kit.run("deploy", "dev", "--image-tag", "v2", "--yes")
    assert second.code == 0, second.text
    assert "placeholder" not in second.err
