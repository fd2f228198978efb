"""The deployment role's actions come from the CloudFormation resource schemas: exact, scoped, within IAM limits."""

from __future__ import annotations

import json

import pytest

from generator import deploy_permissions as dp


def test_handler_permissions_come_from_the_schema():
    actions = dp.handler_permissions("AWS::SNS::Topic")
    assert {"sns:CreateTopic", "sns:DeleteTopic", "sns:SetTopicAttributes"} <= actions


def test_list_handlers_are_not_granted():
    assert "iam:ListRoles" not in dp.handler_permissions("AWS::IAM::Role")  # only the list handler needs it


def test_service_prefixes_are_normalised_to_lower_case():
    actions = dp.handler_permissions("AWS::CloudTrail::Trail")
    assert "cloudtrail:CreateTrail" in actions and not any(a.startswith("CloudTrail:") for a in actions)


def test_schema_errata_that_are_no_iam_action_are_dropped():
    assert not any("REST." in a for a in dp.handler_permissions("AWS::Logs::LogGroup"))
    assert dp.is_iam_action("s3:PutBucketCORS") and not dp.is_iam_action("s3:DeleteBucketCors")


def test_custom_resources_need_only_invoke():
    assert dp.handler_permissions("Custom::AppRunnerLogRetention") == {"lambda:InvokeFunction"}
    assert dp.handler_permissions("AWS::CloudFormation::WaitConditionHandle") == frozenset()


def test_wildcard_actions_in_a_schema_are_refused():
    with pytest.raises(dp.PermissionsError, match="wildcard"):
        dp.handler_permissions("AWS::AutoScaling::AutoScalingGroup")  # its schema lists ec2:Describe* etc.


def test_unknown_type_is_refused():
    with pytest.raises(dp.PermissionsError, match="unknown resource type"):
        dp.handler_permissions("AWS::Nope::Thing")


def test_resource_types_and_actions_are_sorted_and_unique():
    templates = [{"Resources": {"A": {"Type": "AWS::SNS::Topic"}, "B": {"Type": "AWS::SQS::Queue"}}},
                 {"Resources": {"C": {"Type": "AWS::SNS::Topic"}}}]
    assert dp.resource_types(templates) == ["AWS::SNS::Topic", "AWS::SQS::Queue"]
    actions = dp.deploy_actions(dp.resource_types(templates))
    assert actions == sorted(set(actions)) and "sqs:CreateQueue" in actions and "sns:CreateTopic" in actions


@pytest.mark.parametrize("action, scope", [
    ("iam:PassRole", dp.SCOPE_PASS_ROLE),
    ("iam:CreateServiceLinkedRole", dp.SCOPE_SERVICE_LINKED),
    ("iam:PutRolePolicy", dp.SCOPE_IAM),
    ("iam:ListRoles", dp.SCOPE_ANY),
    ("cloudformation:CreateStack", dp.SCOPE_STACKS),
    ("lambda:InvokeFunction", dp.SCOPE_FUNCTIONS),
    ("lambda:CreateFunction", dp.SCOPE_ANY),
    ("ec2:CreateVpc", dp.SCOPE_ANY),
])
def test_scope_of(action, scope):
    assert dp.scope_of(action) == scope


def test_chunks_are_deterministic_complete_and_within_budget():
    actions = [f"svc:Action{i:04d}" for i in range(600)]
    chunks = dp.chunk_actions(reversed(actions), max_chars=2000)
    assert [a for c in chunks for a in c.actions] == actions  # sorted, nothing lost or duplicated
    assert all(len(json.dumps(list(c.actions), separators=(",", ":"))) <= 2000 for c in chunks)
    assert [c.index for c in chunks] == list(range(1, len(chunks) + 1))
    assert dp.chunk_actions(actions, max_chars=2000) == chunks


def test_too_many_chunks_is_an_error():
    with pytest.raises(dp.PermissionsError, match="managed policies"):
        dp.chunk_actions([f"svc:Action{i:04d}" for i in range(600)], max_chars=200, max_chunks=10)


def test_secret_references_by_name():
    tmpl = {"Resources": {"App": {"Properties": {
        "AccessToken": "{{resolve:secretsmanager:app/amplify/git-token:SecretString:token}}",
        "Other": "{{resolve:secretsmanager:plain}}"}}}}
    assert dp.secret_references([tmpl]) == ["app/amplify/git-token", "plain"]
    with pytest.raises(dp.PermissionsError, match="by ARN"):
        dp.secret_references([{"X": "{{resolve:secretsmanager:arn:aws:secretsmanager:r:1:secret:x}}"}])
