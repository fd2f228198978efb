"""Fast unit tests of the deploy command's pure parts (no server)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from generator.deploy import flow, progress, protect, stream, templates
from generator.deploy.changeset import Change, StackChanges
from generator.deploy.errors import PreflightRefused, UsageError
from generator.deploy.render_changes import counts, render
from generator.deploy.targets import Target, check_image_tag
from generator.deploy.ui import Ui

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _target(**kwargs) -> Target:
    base = dict(label="dev", kind="environment", app_name="app", stack_name="app-dev", account_id="123456789012",
                region="eu-west-1", config_file=Path("dev.toml"), template=Path("root.yaml"))
    return Target(**{**base, **kwargs})


def _text(lines) -> str:
    return "\n".join(line.text for line in lines)


def test_deploy_render_flags_stateful_replacement_and_nested_removal():
    tree = StackChanges("", [Change("Modify", "Data", "AWS::CloudFormation::Stack"),
                             Change("Remove", "Old", "AWS::CloudFormation::Stack")],
                        [StackChanges("Data", [
                            Change("Modify", "Cluster", "AWS::RDS::DBCluster", "Conditional", "Aurora cluster",
                                   ("EngineVersion",)),
                            Change("Modify", "Alarm", "AWS::CloudWatch::Alarm", "False"),
                            Change("Add", "Queue", "AWS::SQS::Queue")])])

    text = _text(render(tree, "app-dev", {"Data": "Database"}))

    assert "Data: Database" in text
    assert "~ Modify  Aurora cluster [Cluster] (EngineVersion)" in text and "may be REPLACED" in text
    assert "! Data/Cluster: Aurora cluster (AWS::RDS::DBCluster) may be replaced" in text
    assert "DATA LOSS" in text and "Data/Cluster (AWS::RDS::DBCluster) MAY BE REPLACED" in text
    assert "nested stack Old REMOVED with everything in it" in text
    # "Data changes" is a container, not a change of its own; "Old" removal is real
    assert counts(tree) == {"add": 1, "modify": 2, "remove": 1, "replace": 1, "stateful": 1}


def test_deploy_render_plain_update_has_no_warning():
    tree = StackChanges("", [Change("Modify", "Topic", "AWS::SNS::Topic", "False", "Alert topic")])

    text = _text(render(tree, "app-dev"))

    assert "WARNING" not in text and "Replacements" not in text
    assert "Summary: 0 to add, 1 to modify, 0 to remove" in text


def test_deploy_parameters_reuse_previous_image_tag_and_require_one_first():
    declared = {"ImageTag": {"Type": "String"}, "Size": {"Type": "String", "Default": "1"},
                "Domain": {"Type": "String"}}
    target = _target(parameters={"Domain": "x.test"})
    existing = {"Parameters": [{"ParameterKey": "ImageTag", "ParameterValue": "abc"}]}

    assert flow.parameters(declared, target, "def", None) == [
        {"ParameterKey": "ImageTag", "ParameterValue": "def"}, {"ParameterKey": "Domain", "ParameterValue": "x.test"}]
    reused = flow.parameters(declared, target, None, existing)
    assert reused[0] == {"ParameterKey": "ImageTag", "UsePreviousValue": True}
    with pytest.raises(UsageError, match="--image-tag"):
        flow.parameters(declared, target, None, None)


@pytest.mark.parametrize("tag", ["latest", "", "has space", "-leading-dash", "x" * 129])
def test_deploy_image_tag_refuses_mutable_or_invalid(tag):
    with pytest.raises(UsageError, match="refused"):
        check_image_tag(tag)


def test_deploy_image_tag_accepts_a_commit_sha():
    assert check_image_tag("3f2a9c1d0b7e") == "3f2a9c1d0b7e"


def test_deploy_stack_policy_protects_nested_stacks_that_hold_data(tmp_path):
    (tmp_path / "data.yaml").write_text("Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n")
    (tmp_path / "net.yaml").write_text("Resources:\n  Vpc:\n    Type: AWS::EC2::VPC\n")
    (tmp_path / "root.yaml").write_text(
        "Resources:\n"
        "  Data: {Type: AWS::CloudFormation::Stack, Properties: {TemplateURL: data.yaml}}\n"
        "  Net: {Type: AWS::CloudFormation::Stack, Properties: {TemplateURL: net.yaml}}\n")
    loaded = templates.load(tmp_path / "root.yaml")

    root = protect.policy(loaded)
    data = protect.policy(loaded.children["Data"])

    assert {"Effect": "Deny", "Principal": "*", "Action": ["Update:Replace", "Update:Delete"],
            "Resource": ["LogicalResourceId/Data"]} in root["Statement"]
    assert root["Statement"][0] == {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}
    assert not any("LogicalResourceId/Data" in str(s) for s in data["Statement"])
    assert protect.holds_protected(loaded) and not protect.holds_protected(loaded.children["Net"])


def test_deploy_templates_load_refuses_a_missing_child(tmp_path):
    (tmp_path / "root.yaml").write_text(
        "Resources:\n  Gone: {Type: AWS::CloudFormation::Stack, Properties: {TemplateURL: gone.yaml}}\n")

    with pytest.raises(UsageError, match="make render"):
        templates.load(tmp_path / "root.yaml")


def _event(lid, status, reason="", seconds=0, stack_level=False, label="Data"):
    return stream.Event(f"{lid}{status}{seconds}", label, lid, "AWS::S3::Bucket", status, reason,
                          T0 + timedelta(seconds=seconds), "", stack_level)


def test_deploy_root_causes_skip_cancellations_and_embedded_echoes():
    events = [
        _event("Other", "CREATE_FAILED", "Resource creation cancelled", 1),
        _event("Data", "CREATE_FAILED", "Embedded stack arn:... was not successfully created", 3, label=""),
        _event("Bucket", "CREATE_FAILED", "Bucket name already taken", 2),
        _event("Bucket", "CREATE_FAILED", "Bucket name already taken", 2),
    ]

    causes = stream.root_causes(events)

    assert [(c.where, c.reason) for c in causes] == [("Data/Bucket", "Bucket name already taken")]


def test_deploy_live_view_renders_rows_and_reasons_on_a_terminal():
    buffer = io.StringIO()
    ui = Ui(out=io.StringIO(), err=buffer)
    ui.err = Console(file=buffer, force_terminal=True, width=120)
    view = progress.LiveView(ui, "app-dev")

    view.update([_event("Bucket", "CREATE_FAILED", "Bucket name already taken", 2)], "ROLLBACK_IN_PROGRESS")
    rendered = Console(file=io.StringIO(), width=120, record=True)
    rendered.print(view._render(final=True))
    text = rendered.export_text()

    assert "Data" in text and "Bucket" in text and "CREATE_FAILED" in text
    assert "Bucket name already taken" in text and "ROLLBACK_IN_PROGRESS" in text


def test_deploy_errors_read_what_why_and_fix():
    error = PreflightRefused("refusing to touch app-dev", "credentials are for account 1", "use account 2")

    assert error.message == "refusing to touch app-dev: credentials are for account 1.\n  To fix: use account 2"
    assert error.exit_code == 3
