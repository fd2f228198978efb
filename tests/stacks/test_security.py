"""Invariants of the security stack (KMS keys and their policies, CloudTrail and its bucket)."""

from __future__ import annotations

import functools

import fixture_config
import pytest
from cfn_helpers import ENVIRONMENTS, as_list, one, props, resources_of, stack, statements

from generator import naming
from generator.cfn import DESCRIPTION_KEY, to_data
from generator.config import ConfigError, load_environment, parse_environment
from generator.stacks import security

ACCOUNT = {"Ref": "AWS::AccountId"}
ROOT = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
KEYS = ("DataKey", "OpsKey", "TrailKey")
USAGE = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
         "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant"}


@functools.cache
def tmpl(env: str) -> dict:
    """The environment's security stack with its own trail opted in (the account-level trail is the default)."""
    config = cfg(env)
    if config.security.cloudtrail:
        return stack(env, "security")
    return to_data(security.build(config.model_copy(
        update={"security": config.security.model_copy(update={"cloudtrail": True})})))


def cfg(env: str):
    return load_environment(env)


def policy(env: str, key: str) -> list[dict]:
    return statements(props(tmpl(env)["Resources"][key])["KeyPolicy"])


def by_sid(env: str, key: str, sid: str) -> dict:
    (found,) = [s for s in policy(env, key) if s["Sid"] == sid]
    return found


def via_services(statement: dict) -> set[str]:
    return {v["Fn::Sub"].split(".")[0] for v in as_list(statement["Condition"]["StringEquals"]["kms:ViaService"])}


def trail_arn(env: str) -> dict:
    return {"Fn::Sub": "arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/"
                       + naming.trail_name(cfg(env))}


def without_trail(env: str) -> dict:
    config = cfg(env)
    return to_data(security.build(config.model_copy(
        update={"security": config.security.model_copy(update={"cloudtrail": False})})))


# ---- Keys --------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_key_rotates_waits_30_days_and_is_retained(env):
    keys = resources_of(tmpl(env), "AWS::KMS::Key")
    assert set(keys) == set(KEYS)
    assert all(props(k)["EnableKeyRotation"] is True and props(k)["PendingWindowInDays"] == 30 for k in keys.values())
    assert all((k["DeletionPolicy"], k["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
               for k in keys.values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_key_has_its_alias(env):
    aliases = {props(a)["TargetKeyId"]["Ref"]: props(a)["AliasName"]
               for a in resources_of(tmpl(env), "AWS::KMS::Alias").values()}
    assert aliases == {key: f"alias/{cfg(env).app_name}-{env}-{key[:-3].lower()}" for key in KEYS}


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("key", KEYS)
def test_no_key_policy_statement_has_a_wildcard_action_or_principal(env, key):
    for statement in policy(env, key):
        assert statement["Effect"] == "Allow"
        assert not [a for a in as_list(statement["Action"]) if a in ("*", "kms:*")], statement["Sid"]
        assert statement["Principal"] not in ("*", {"AWS": "*"}), statement["Sid"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("key", KEYS)
def test_the_account_uses_a_key_only_through_named_services(env, key):
    usage = [s for s in policy(env, key) if s["Principal"] == ROOT and USAGE & set(as_list(s["Action"]))]
    assert usage, f"{key}: no usage statement for the account root (principal shape changed?)"
    for statement in usage:
        assert statement["Condition"]["StringEquals"]["kms:CallerAccount"] == ACCOUNT, statement["Sid"]
        assert via_services(statement), statement["Sid"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_key_serves_exactly_the_data_services(env):
    queue = ["sqs"] if load_environment(env).workers.enabled else []   # the workers' run queue
    sid = "UseOnlyThroughRdsS3SecretsmanagerBackupApprunner" + "".join(s.capitalize() for s in queue)
    assert via_services(by_sid(env, "DataKey", sid)) == {"rds", "s3", "secretsmanager", "backup", "apprunner", *queue}
    grants = by_sid(env, "DataKey", "GrantsOnlyForAwsResourcesOfRdsBackupApprunner")
    assert grants["Condition"]["Bool"]["kms:GrantIsForAWSResource"] == "true"
    # The one service principal: CloudWatch Logs, for App Runner's own log groups only (EncryptionConfiguration).
    services = [s for s in policy(env, "DataKey") if "Service" in s["Principal"]]
    assert [s["Sid"] for s in services] == ["CloudWatchLogsForAppRunnerLogGroups"]
    assert services[0]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/apprunner/*"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ops_key_lets_cloudwatch_logs_encrypt_only_this_accounts_log_groups(env):
    logs = by_sid(env, "OpsKey", "CloudWatchLogsForThisAccountsLogGroups")
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ops_key_alert_publishers_are_pinned_to_this_account(env):
    publishers = {s["Principal"]["Service"]: s for s in policy(env, "OpsKey")
                  if isinstance(s["Principal"].get("Service"), str)}
    assert set(publishers) == {"cloudwatch.amazonaws.com", "budgets.amazonaws.com", "costalerts.amazonaws.com",
                               *(["events.amazonaws.com"] if load_environment(env).workers.enabled else [])}
    assert all(s["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT for s in publishers.values())
    assert all(set(s["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"} for s in publishers.values())
    assert via_services(by_sid(env, "OpsKey", "UseOnlyThroughSns")) == {"sns"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_trail_key_is_usable_by_cloudtrail_only_for_this_trail(env):
    cloudtrail = [s for s in policy(env, "TrailKey") if s["Principal"] == {"Service": "cloudtrail.amazonaws.com"}]
    assert len(cloudtrail) == 2
    assert all(s["Condition"]["StringEquals"]["aws:SourceArn"] == trail_arn(env) for s in cloudtrail)
    encrypt = by_sid(env, "TrailKey", "CloudTrailEncryptsThisTrailsLogs")
    assert "kms:EncryptionContext:aws:cloudtrail:arn" in encrypt["Condition"]["StringLike"]
    read = by_sid(env, "TrailKey", "ThisAccountReadsTrailLogsThroughS3")
    assert read["Action"] == ["kms:Decrypt"] and via_services(read) == {"s3"}


# ---- CloudTrail --------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_trail_is_multi_region_validated_kms_encrypted_and_logging(env):
    _, trail = one(tmpl(env), "AWS::CloudTrail::Trail")
    p = props(trail)
    assert (p["IsMultiRegionTrail"], p["IncludeGlobalServiceEvents"], p["EnableLogFileValidation"], p["IsLogging"]) == (
        True, True, True, True)
    assert p["KMSKeyId"] == {"Fn::GetAtt": ["TrailKey", "Arn"]}
    assert p["S3BucketName"] == {"Ref": "TrailBucket"} and trail["DependsOn"] == ["TrailBucketPolicy"]
    assert p["TrailName"] == naming.trail_name(cfg(env))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_trail_bucket_is_private_owner_enforced_logged_and_retained(env):
    bucket = tmpl(env)["Resources"]["TrailBucket"]
    p = props(bucket)
    assert all(p["PublicAccessBlockConfiguration"].values()) and len(p["PublicAccessBlockConfiguration"]) == 4
    assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert p["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "TrailAccessLogBucket"}
    assert p["VersioningConfiguration"]["Status"] == "Enabled"
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_trail_bucket_lifecycle_follows_config(env):
    (rule,) = props(tmpl(env)["Resources"]["TrailBucket"])["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == cfg(env).security.trail_log_retention_days
    assert rule["Transitions"] == [{"StorageClass": "GLACIER_IR",
                                    "TransitionInDays": cfg(env).security.trail_log_archive_after_days}]
    assert "NoncurrentVersionExpiration" in rule and "AbortIncompleteMultipartUpload" in rule


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_trail_bucket_policy_is_tls_only_and_admits_only_this_trail(env):
    found = statements(props(tmpl(env)["Resources"]["TrailBucketPolicy"])["PolicyDocument"])
    deny = [s for s in found if s["Effect"] == "Deny"]
    assert [s["Condition"] for s in deny] == [{"Bool": {"aws:SecureTransport": False}}]
    allows = [s for s in found if s["Effect"] == "Allow"]
    assert {a for s in allows for a in as_list(s["Action"])} == {"s3:GetBucketAcl", "s3:PutObject"}
    assert all(s["Principal"] == {"Service": "cloudtrail.amazonaws.com"} for s in allows)
    assert all(s["Condition"]["StringEquals"]["aws:SourceArn"] == trail_arn(env) for s in allows)
    (put,) = [s for s in allows if s["Action"] == ["s3:PutObject"]]
    assert put["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:s3:::${TrailBucket}/AWSLogs/${AWS::AccountId}/*"}]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_turning_cloudtrail_off_drops_trail_key_and_buckets_but_keeps_the_contract(env):
    t = without_trail(env)
    assert {r["Type"] for r in t["Resources"].values()} == {"AWS::KMS::Key", "AWS::KMS::Alias"}
    assert set(resources_of(t, "AWS::KMS::Key")) == {"DataKey", "OpsKey"}
    assert set(t["Outputs"]) == {"DataKeyArn", "OpsKeyArn"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_are_the_key_arns(env):
    outputs = tmpl(env)["Outputs"]
    assert outputs["DataKeyArn"]["Value"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert outputs["OpsKeyArn"]["Value"] == {"Fn::GetAtt": ["OpsKey", "Arn"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_resource_has_a_human_description(env):
    assert all(r.get("Metadata", {}).get(DESCRIPTION_KEY) for r in tmpl(env)["Resources"].values())


# ---- Config ------------------------------------------------------------------------------------

def test_archiving_trail_logs_too_close_to_expiry_is_refused():
    data = fixture_config.environment("dev").model_dump()
    data["security"] = {"trail_log_retention_days": 120, "trail_log_archive_after_days": 60}
    with pytest.raises(ConfigError, match=r"security: .*trail_log_archive_after_days \(60\).*90-day minimum"):
        parse_environment(data)


def test_zero_means_never_archive():
    config = fixture_config.environment("dev")
    config = config.model_copy(update={"security": config.security.model_copy(
        update={"trail_log_archive_after_days": 0, "cloudtrail": True})})
    (rule,) = props(to_data(security.build(config))["Resources"]["TrailBucket"])["LifecycleConfiguration"]["Rules"]
    assert "Transitions" not in rule
