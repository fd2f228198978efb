"""Invariants of the account-level bootstrap stack (key, artifact bucket, ECR repository, Git token secret)."""

from __future__ import annotations

import json

import pytest
from cfn_helpers import as_list, props, require, statements, template

from generator import naming
from generator.config import load_account
from generator.stacks import bootstrap

KEY_ARN = {"Fn::GetAtt": ["BootstrapKey", "Arn"]}


def tmpl() -> dict:
    return template("bootstrap.yaml")


def res(logical_id: str) -> dict:
    return tmpl()["Resources"][logical_id]


def key_statements() -> dict[str, dict]:
    return {s["Sid"]: s for s in statements(props(res("BootstrapKey"))["KeyPolicy"])}


def test_key_rotates_is_retained_and_has_the_naming_alias():
    key = res("BootstrapKey")
    assert props(key)["EnableKeyRotation"] is True
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    alias = res("BootstrapKeyAlias")
    assert props(alias) == {"AliasName": naming.bootstrap_key_alias(load_account().app_name),
                            "TargetKeyId": {"Ref": "BootstrapKey"}}


def test_key_policy_has_no_wildcard_action_or_principal():
    for sid, statement in key_statements().items():
        assert all("*" not in action for action in as_list(statement["Action"])), sid
        assert statement["Principal"] != "*" and statement["Principal"] != {"AWS": "*"}, sid


def test_account_uses_the_key_only_through_the_listed_services():
    use = key_statements()["AccountUsesKeyThroughServices"]
    via = use["Condition"]["StringEquals"]["kms:ViaService"]
    assert [v["Fn::Sub"].split(".")[0] for v in via] == list(bootstrap.VIA_SERVICES)
    assert {"ecr", "s3", "secretsmanager"} <= set(bootstrap.VIA_SERVICES)
    admin = key_statements()["KeyAdministrationByThisAccount"]
    assert not {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"} & set(admin["Action"])
    assert "kms:PutKeyPolicy" in admin["Action"]  # the key stays manageable
    assert "kms:DisableKeyRotation" not in admin["Action"]  # rotation stays on, as for the environment keys


def test_cloudwatch_logs_may_use_the_key_only_for_this_accounts_log_groups():
    logs = key_statements()["CloudWatchLogsEncryptsLogGroups"]
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}


def test_artifact_bucket_is_kms_versioned_tls_only_logged_and_expires():
    account = load_account()
    bucket = props(res("ArtifactBucket"))
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}
    assert list(bucket["PublicAccessBlockConfiguration"].values()) == [True] * 4
    rule = bucket["LifecycleConfiguration"]["Rules"][0]
    assert rule["ExpirationInDays"] == account.artifact_expiration_days
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == account.artifact_expiration_days
    policy = props(res("ArtifactBucketPolicy"))["PolicyDocument"]
    deny = [s for s in statements(policy) if s["Effect"] == "Deny"]
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": False}}
    assert res("ArtifactBucket")["DeletionPolicy"] == "RetainExceptOnCreate"


def test_ecr_repository_is_immutable_scanned_kms_and_keeps_the_newest_n():
    account = load_account()
    repo = res("BackendRepository")
    p = props(repo)
    assert p["RepositoryName"] == naming.ecr_repository_name(account.app_name)
    assert p["ImageTagMutability"] == "IMMUTABLE"
    assert p["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert p["EncryptionConfiguration"] == {"EncryptionType": "KMS", "KmsKey": KEY_ARN}
    assert repo["DeletionPolicy"] == "RetainExceptOnCreate"
    rules = json.loads(p["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rules == [{"action": {"type": "expire"}, "description": f"Keep the newest {account.ecr_keep_images} images",
                      "rulePriority": 1, "selection": {"countNumber": account.ecr_keep_images,
                                                       "countType": "imageCountMoreThan", "tagStatus": "any"}}]


@pytest.mark.parametrize("keep", [1, 30, 1000])
def test_lifecycle_policy_text_is_deterministic(keep):
    text = bootstrap.ecr_lifecycle_policy(keep)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))  # canonical: stable bytes
    assert json.loads(bootstrap.ecr_lifecycle_policy(keep))["rules"][0]["selection"]["countNumber"] == keep


def test_git_token_secret_has_no_value_and_a_token_key():
    account = load_account()
    secret = props(res("GitTokenSecret"))
    assert "SecretString" not in secret
    assert secret["Name"] == naming.git_token_secret_name(account.app_name)
    assert secret["KmsKeyId"] == KEY_ARN
    generated = secret["GenerateSecretString"]
    assert generated["GenerateStringKey"] == bootstrap.GIT_TOKEN_JSON_KEY == "token"
    assert json.loads(generated["SecretStringTemplate"]) == {}
    assert res("GitTokenSecret")["DeletionPolicy"] == "RetainExceptOnCreate"


def test_outputs_are_exported_with_the_naming_helper():
    app = load_account().app_name
    outputs = tmpl()["Outputs"]
    expected = ["ArtifactBucketName", "ArtifactKeyArn", "EcrRepositoryName", "EcrRepositoryUri", "GitTokenSecretArn",
                "PermissionsBoundaryArn"]
    if load_account().cloudtrail:
        expected = sorted([*expected, "AuditTrailBucketName"])
    assert sorted(outputs) == expected
    for name in expected:
        assert outputs[name]["Export"] == {"Name": naming.bootstrap_export(app, name)}


def test_no_parameters_and_every_stateful_resource_has_explicit_policies():
    assert not tmpl().get("Parameters")
    for type_ in ("AWS::KMS::Key", "AWS::S3::Bucket", "AWS::ECR::Repository", "AWS::SecretsManager::Secret"):
        for lid, resource in require(tmpl(), type_).items():
            assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == (
                "RetainExceptOnCreate", "Retain"), lid
