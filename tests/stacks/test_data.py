"""Invariants of the data stack (Aurora, content bucket, AWS Backup, data-access policy), per environment."""

from __future__ import annotations

import json

import fixture_config
import pytest
from cfn_helpers import ENVIRONMENTS, as_list, one, props, resources_of, stack, statements

from generator import naming
from generator.cfn import DESCRIPTION_KEY, to_data
from generator.config import ConfigError, load_environment, parse_environment
from generator.stacks import data

DATA_KEY = {"Ref": "DataKeyArn"}
OPS_KEY = {"Ref": "OpsKeyArn"}


def tmpl(env: str) -> dict:
    return stack(env, "data")


def cluster(env: str) -> dict:
    return props(one(tmpl(env), "AWS::RDS::DBCluster")[1])


def bucket(env: str) -> dict:
    return tmpl(env)["Resources"]["ContentBucket"]


def cfg(env: str):
    return load_environment(env)


def keys(node) -> set[str]:
    """Every mapping key anywhere in a parsed template."""
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in keys(v)}
    return {k for v in node for k in keys(v)} if isinstance(node, list) else set()


# ---- Aurora -------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
class TestCluster:
    def test_storage_encrypted_with_data_key(self, env):
        assert (cluster(env)["StorageEncrypted"], cluster(env)["KmsKeyId"]) == (True, DATA_KEY)

    def test_managed_master_password_encrypted_with_data_key(self, env):
        assert (cluster(env)["ManageMasterUserPassword"], cluster(env)["MasterUserSecret"]) == (
            True, {"KmsKeyId": DATA_KEY})

    def test_no_master_password_anywhere(self, env):
        assert "MasterUserPassword" not in keys(tmpl(env))

    def test_serverless_v2_aurora_postgresql_without_engine_mode(self, env):
        c = cluster(env)
        assert (c["Engine"], c["EngineVersion"], "EngineMode" in c) == (
            "aurora-postgresql", cfg(env).database.engine_version, False)

    def test_tls_forced_by_cluster_parameter_group_of_matching_family(self, env):
        group = props(one(tmpl(env), "AWS::RDS::DBClusterParameterGroup")[1])
        major = cfg(env).database.engine_version.split(".")[0]
        assert (group["Parameters"]["rds.force_ssl"], group["Family"]) == ("1", f"aurora-postgresql{major}")
        assert cluster(env)["DBClusterParameterGroupName"] == {"Ref": "ClusterParameterGroup"}

    def test_iam_auth_log_export_and_insights(self, env):
        c = cluster(env)
        assert (c["EnableIAMDatabaseAuthentication"], c["EnableCloudwatchLogsExports"]) == (True, ["postgresql"])
        assert (c["PerformanceInsightsEnabled"], c["PerformanceInsightsKmsKeyId"]) == (True, DATA_KEY)

    def test_backup_retention_equals_config(self, env):
        assert cluster(env)["BackupRetentionPeriod"] == cfg(env).database.backup_retention_days

    def test_deletion_protection_equals_config(self, env):
        assert cluster(env)["DeletionProtection"] is cfg(env).database.deletion_protection

    def test_snapshot_on_delete_and_replace(self, env):
        res = one(tmpl(env), "AWS::RDS::DBCluster")[1]
        assert (res["DeletionPolicy"], res["UpdateReplacePolicy"]) == ("Snapshot", "Snapshot")

    def test_extended_support_disabled(self, env):
        assert cluster(env)["EngineLifecycleSupport"] == "open-source-rds-extended-support-disabled"

    def test_capacity_from_config_and_auto_pause_only_at_zero(self, env):
        db, scaling = cfg(env).database, cluster(env)["ServerlessV2ScalingConfiguration"]
        assert (scaling["MinCapacity"], scaling["MaxCapacity"]) == (db.min_acu, db.max_acu)
        assert scaling.get("SecondsUntilAutoPause") == (db.seconds_until_auto_pause if db.min_acu == 0 else None)

    def test_private_network_placement(self, env):
        c = cluster(env)
        assert c["VpcSecurityGroupIds"] == [{"Ref": "DatabaseSecurityGroupId"}]
        assert props(one(tmpl(env), "AWS::RDS::DBSubnetGroup")[1])["SubnetIds"] == {
            "Fn::Split": [",", {"Ref": "DataSubnetIds"}]}

    def test_fixed_identifier_and_explicit_windows(self, env):
        c, db = cluster(env), cfg(env).database
        assert c["DBClusterIdentifier"] == naming.db_cluster_identifier(cfg(env))
        assert (c["PreferredBackupWindow"], c["PreferredMaintenanceWindow"], c["Port"]) == (
            db.backup_window, db.maintenance_window, 5432)

    def test_log_export_group_precreated_with_ops_key(self, env):
        name = f"/aws/rds/cluster/{naming.db_cluster_identifier(cfg(env))}/postgresql"
        (lid, group), = [(k, v) for k, v in resources_of(tmpl(env), "AWS::Logs::LogGroup").items()
                         if props(v).get("LogGroupName") == name]
        assert (props(group)["KmsKeyId"], props(group)["RetentionInDays"]) == (OPS_KEY, cfg(env).logging.retention_days)
        assert lid in one(tmpl(env), "AWS::RDS::DBCluster")[1]["DependsOn"]

    def test_instances_are_serverless_private_and_tier_0_or_1(self, env):
        instances = resources_of(tmpl(env), "AWS::RDS::DBInstance")
        assert len(instances) == (2 if cfg(env).database.reader else 1)
        for res in instances.values():
            p = props(res)
            assert (p["DBInstanceClass"], p["PubliclyAccessible"], p["DBClusterIdentifier"]) == (
                "db.serverless", False, {"Ref": "Cluster"})
            assert p["PromotionTier"] in (0, 1) and p["AutoMinorVersionUpgrade"] is True
            assert (p["EnablePerformanceInsights"], p["PerformanceInsightsKMSKeyId"]) == (True, DATA_KEY)
            assert (res["DeletionPolicy"], res["UpdateReplacePolicy"]) == ("Delete", "Delete")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_zero_acu_means_auto_pause(env):
    scaling = cluster(env)["ServerlessV2ScalingConfiguration"]
    assert (scaling["MinCapacity"] == 0) == ("SecondsUntilAutoPause" in scaling)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_production_has_deletion_protection(env):
    if cfg(env).production:
        assert cluster(env)["DeletionProtection"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_a_reader_sits_in_another_az_than_the_writer(env):
    instances = resources_of(tmpl(env), "AWS::RDS::DBInstance")
    zones = {lid: props(r)["AvailabilityZone"]["Fn::Select"][0] for lid, r in instances.items()}
    expected = {"WriterInstance": 0, "ReaderInstance": 1} if cfg(env).database.reader else {"WriterInstance": 0}
    assert zones == expected
    if cfg(env).database.reader:
        assert props(instances["ReaderInstance"])["PromotionTier"] == 1


def test_scaling_class_accepts_aurora_range_and_rejects_the_rest():
    assert data.ServerlessV2ScalingConfiguration(MinCapacity=0, MaxCapacity=256).to_dict() == {
        "MinCapacity": 0, "MaxCapacity": 256}
    for bad in (0.25, 256.5, -1):
        with pytest.raises(ValueError, match=r"0\.\.256 ACU"):
            data.ServerlessV2ScalingConfiguration(MinCapacity=bad)


def test_renders_beyond_troposphere_limits():
    base = fixture_config.environment("dev")
    config = base.model_copy(update={"database": base.database.model_copy(update={"max_acu": 256})})
    scaling = to_data(data.build(config))["Resources"]["Cluster"]["Properties"]["ServerlessV2ScalingConfiguration"]
    assert (scaling["MinCapacity"], scaling["MaxCapacity"]) == (0, 256)


@pytest.mark.parametrize("database", [
    {"backup_window": "03:30-04:00", "maintenance_window": "mon:03:45-mon:04:15"},
    {"backup_window": "23:45-00:05"},
    {"maintenance_window": "sat:23:50-sun:00:10"},
    {"backup_window": "2:00-3:00"},
])
def test_bad_maintenance_or_backup_windows_are_config_errors(database):
    raw = fixture_config.environment("dev").model_dump(exclude_none=True)
    raw["database"].update(database)
    with pytest.raises(ConfigError, match="window"):
        parse_environment(raw)


# ---- content bucket -----------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
class TestContentBucket:
    def test_sse_kms_with_data_key_and_bucket_key(self, env):
        rule, = props(bucket(env))["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule == {"BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": DATA_KEY}}

    def test_versioned_private_and_owner_enforced(self, env):
        p = props(bucket(env))
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}
        assert set(p["PublicAccessBlockConfiguration"].values()) == {True} and len(
            p["PublicAccessBlockConfiguration"]) == 4
        assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]

    def test_tls_only_policy(self, env):
        policy = props(tmpl(env)["Resources"]["ContentBucketPolicy"])
        assert policy["Bucket"] == {"Ref": "ContentBucket"}
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": False}}
                   for s in statements(policy["PolicyDocument"]))

    def test_lifecycle_tiering_noncurrent_expiry_and_abort(self, env):
        storage = cfg(env).storage
        rule = next(r for r in props(bucket(env))["LifecycleConfiguration"]["Rules"] if "Transitions" in r)
        assert rule["Transitions"] == [{"StorageClass": "INTELLIGENT_TIERING",
                                        "TransitionInDays": storage.intelligent_tiering_after_days}]
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == storage.noncurrent_version_expiration_days
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == storage.abort_incomplete_upload_days

    def test_access_logging_to_expiring_log_bucket(self, env):
        assert props(bucket(env))["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}
        log_rule, = props(tmpl(env)["Resources"]["AccessLogBucket"])["LifecycleConfiguration"]["Rules"]
        assert log_rule["ExpirationInDays"] == cfg(env).storage.access_log_expiration_days

    def test_cors_only_for_frontend_origins(self, env):
        rule, = props(bucket(env))["CorsConfiguration"]["CorsRules"]
        assert rule["AllowedOrigins"] == {"Fn::Split": [",", {"Ref": "FrontendOrigins"}]}
        assert sorted(rule["AllowedMethods"]) == ["GET", "HEAD", "POST", "PUT"]

    def test_both_buckets_retained(self, env):
        for lid in ("ContentBucket", "AccessLogBucket"):
            res = tmpl(env)["Resources"][lid]
            assert (res["DeletionPolicy"], res["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


# ---- AWS Backup ---------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
class TestBackup:
    def test_vault_encrypted_with_data_key_and_retained(self, env):
        _, vault = one(tmpl(env), "AWS::Backup::BackupVault")
        assert (props(vault)["EncryptionKeyArn"], vault["DeletionPolicy"]) == (DATA_KEY, "RetainExceptOnCreate")
        assert props(vault)["BackupVaultName"] == naming.backup_vault_name(cfg(env))

    def test_daily_plan_with_configured_retention(self, env):
        rule, = props(one(tmpl(env), "AWS::Backup::BackupPlan")[1])["BackupPlan"]["BackupPlanRule"]
        assert rule["ScheduleExpression"] == cfg(env).backup.schedule
        assert rule["ScheduleExpression"].split()[2:4] == ["*", "*"]  # every day of every month
        assert rule["Lifecycle"] == {"DeleteAfterDays": cfg(env).backup.retention_days}
        assert rule["TargetBackupVault"] == {"Ref": "BackupVault"}
        assert rule["StartWindowMinutes"] > 0 and rule["CompletionWindowMinutes"] > 0

    def test_selection_covers_the_cluster(self, env):
        selection = props(one(tmpl(env), "AWS::Backup::BackupSelection")[1])["BackupSelection"]
        assert selection["Resources"] == [{"Fn::GetAtt": ["Cluster", "DBClusterArn"]}]
        assert selection["IamRoleArn"] == {"Fn::GetAtt": ["BackupRole", "Arn"]}

    def test_backup_role_trusts_only_aws_backup_and_may_use_data_key(self, env):
        role = props(tmpl(env)["Resources"]["BackupRole"])
        trust, = statements(role["AssumeRolePolicyDocument"])
        assert trust["Principal"] == {"Service": ["backup.amazonaws.com"]}
        kms = [s for p in role["Policies"] for s in statements(p["PolicyDocument"])]
        assert all(s["Resource"] == [DATA_KEY] for s in kms) and any("kms:Decrypt" in s["Action"] for s in kms)


# ---- data-access policy -------------------------------------------------------------------------

def access_statements(env: str) -> list[dict]:
    return statements(props(tmpl(env)["Resources"]["DataAccessPolicy"])["PolicyDocument"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
class TestDataAccessPolicy:
    def test_no_wildcard_actions(self, env):
        actions = [a for s in access_statements(env) for a in as_list(s["Action"])]
        assert actions and not [a for a in actions if "*" in a]

    def test_names_only_the_secret_key_and_bucket(self, env):
        resources = [r for s in access_statements(env) for r in as_list(s["Resource"])]
        expected = [{"Fn::GetAtt": ["Cluster", "MasterUserSecret.SecretArn"]}, DATA_KEY,
                    {"Fn::Sub": "${ContentBucket.Arn}/*"}, {"Fn::GetAtt": ["ContentBucket", "Arn"]}]
        assert sorted(map(json.dumps, resources)) == sorted(map(json.dumps, expected))

    def test_only_allows(self, env):
        assert {s["Effect"] for s in access_statements(env)} == {"Allow"}

    def test_data_key_only_via_secrets_manager_and_s3(self, env):
        kms, = [s for s in access_statements(env) if s["Resource"] == [DATA_KEY]]
        services = kms["Condition"]["StringEquals"]["kms:ViaService"]
        assert sorted(s["Fn::Sub"].split(".")[0] for s in services) == ["s3", "secretsmanager"]
        assert sorted(kms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]

    def test_secret_is_read_only(self, env):
        secret, = [s for s in access_statements(env)
                   if s["Resource"] == [{"Fn::GetAtt": ["Cluster", "MasterUserSecret.SecretArn"]}]]
        assert sorted(secret["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]


# ---- contract with the root ---------------------------------------------------------------------

STUB_OUTPUTS = ["ClusterIdentifier", "WriterInstanceIdentifier", "DatabaseEndpoint", "DatabaseReaderEndpoint",
                "DatabasePort", "DatabaseName", "DatabaseSecretArn", "ContentBucketName", "ContentBucketArn",
                "DataAccessPolicyArn", "BackupVaultName"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_and_parameters_contract(env):
    outputs = set(tmpl(env)["Outputs"])
    assert set(STUB_OUTPUTS) <= outputs
    assert ("ReaderInstanceIdentifier" in outputs) is cfg(env).database.reader
    assert set(tmpl(env)["Parameters"]) == {"DataKeyArn", "OpsKeyArn", "DataSubnetIds", "DatabaseSecurityGroupId",
                                            "FrontendOrigins"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_resource_described(env):
    assert all(r.get("Metadata", {}).get(DESCRIPTION_KEY) for r in tmpl(env)["Resources"].values())
