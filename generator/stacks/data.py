"""Data stack: Aurora Serverless v2 PostgreSQL, the content bucket (+ access-log bucket), AWS Backup, and
the least-privilege managed policy the backend attaches to reach them."""

from __future__ import annotations

from awacs import kms as awacs_kms
from awacs import s3 as awacs_s3
from awacs import secretsmanager as awacs_sm
from awacs.aws import Allow, Bool, Condition, PolicyDocument, Statement, StringEquals
from awacs.helpers.trust import make_simple_assume_policy
from troposphere import (
    AWSHelperFn,
    GetAtt,
    GetAZs,
    Ref,
    Select,
    Split,
    Sub,
    Template,
    backup,
    iam,
    rds,
    s3,
)

from generator import naming
from generator.cfn import add_output, add_parameter, describe, new_template, skip_checkov
from generator.components import access_log_bucket, log_group, retention_policies, secure_bucket
from generator.config import EnvironmentConfig
from generator.stacks.spec import StackSpec

COMPONENT = "data"
DESCRIPTION = "Aurora Serverless v2 PostgreSQL, content bucket, AWS Backup"

ENGINE = "aurora-postgresql"
PORT = 5432
MASTER_USERNAME = "dbadmin"  # password: generated, stored and rotated by RDS in Secrets Manager
EXTENDED_SUPPORT_DISABLED = "open-source-rds-extended-support-disabled"
DATABASE_INSIGHTS_MODE = "standard"  # the free tier; "advanced" needs 465 days of retention
BACKUP_START_WINDOW_MINUTES = 60
BACKUP_COMPLETION_WINDOW_MINUTES = 360
CORS_MAX_AGE_SECONDS = 3000

PARAMETERS = {
    "DataKeyArn": "ARN of the KMS key for data at rest (RDS, S3, Secrets Manager, Backup)",
    "OpsKeyArn": "ARN of the KMS key for operations data (log groups)",
    "DataSubnetIds": "Comma-separated ids of the isolated data subnets, one per AZ",
    "DatabaseSecurityGroupId": "Security group of the database (5432 from the connector only)",
    "FrontendOrigins": "Comma-separated https origins allowed by the content bucket's CORS",
}

# Cluster parameter group: TLS is mandatory; the logging settings feed the exported `postgresql` log.
CLUSTER_PARAMETERS = {
    "rds.force_ssl": "1",
    "ssl_min_protocol_version": "TLSv1.2",
    "log_connections": "1",
    "log_disconnections": "1",
    "log_lock_waits": "1",
    "log_min_duration_statement": "1000",  # ms: statements slower than a second
    "log_statement": "ddl",
    "log_temp_files": "10240",  # kB: temp files of 10 MB or more (sorts/hashes spilling to disk)
}


# ---- Aurora capacity: the one place that works round troposphere's validator --------------------
# troposphere (<= 4.11) refuses ServerlessV2ScalingConfiguration MinCapacity 0 and MaxCapacity > 128,
# although Aurora accepts 0..256 ACU in 0.5 steps (0 = auto-pause;
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ServerlessV2ScalingConfiguration.html). The subclass
# below keeps the same CloudFormation type and only relaxes those two validators. Config validation
# (generator/config.py) already enforces the real rules: half steps, max >= min, auto-pause only at 0.

def _acu(value):
    if isinstance(value, AWSHelperFn):
        return value
    if not 0 <= value <= 256 or value * 2 != int(value * 2):
        raise ValueError(f"Aurora Serverless v2 capacity must be 0..256 ACU in 0.5 steps (got {value})")
    return int(value) if value == int(value) else value


class ServerlessV2ScalingConfiguration(rds.ServerlessV2ScalingConfiguration):
    """`rds.ServerlessV2ScalingConfiguration` with Aurora's real capacity range (0..256 ACU)."""

    props = {**rds.ServerlessV2ScalingConfiguration.props, "MinCapacity": (_acu, False),
             "MaxCapacity": (_acu, False)}


def scaling(config: EnvironmentConfig) -> ServerlessV2ScalingConfiguration:
    db = config.database
    result = ServerlessV2ScalingConfiguration(MinCapacity=db.min_acu, MaxCapacity=db.max_acu)
    if db.min_acu == 0:
        result.SecondsUntilAutoPause = db.seconds_until_auto_pause
    return result


def parameter_family(engine_version: str) -> str:
    return f"{ENGINE}{engine_version.split('.')[0]}"


# ---- builders -----------------------------------------------------------------------------------

def _database(template: Template, config: EnvironmentConfig) -> rds.DBCluster:
    db = config.database
    data_key, ops_key = Ref("DataKeyArn"), Ref("OpsKeyArn")
    cluster_id = naming.db_cluster_identifier(config)

    subnets = template.add_resource(describe(rds.DBSubnetGroup(
        "DatabaseSubnetGroup",
        DBSubnetGroupDescription=f"{config.app_name} {config.name}: isolated data subnets",
        SubnetIds=Split(",", Ref("DataSubnetIds")),
    ), "Aurora subnet group on the isolated data subnets"))
    parameters = template.add_resource(describe(rds.DBClusterParameterGroup(
        "ClusterParameterGroup",
        Description=f"{config.app_name} {config.name}: TLS forced, connection and slow-query logging",
        Family=parameter_family(db.engine_version),
        Parameters=dict(CLUSTER_PARAMETERS),
    ), "Aurora cluster parameter group: TLS only (rds.force_ssl), logging"))
    # RDS would create this group itself on first export, unencrypted and kept forever.
    logs = log_group(template, "DatabaseLogGroup", description="PostgreSQL log exported by Aurora",
                     kms_key_arn=ops_key, retention_days=config.logging.retention_days,
                     retain=config.production, name=f"/aws/rds/cluster/{cluster_id}/postgresql")

    cluster = rds.DBCluster(
        "Cluster",
        DBClusterIdentifier=cluster_id,
        Engine=ENGINE,
        EngineVersion=db.engine_version,
        EngineLifecycleSupport=EXTENDED_SUPPORT_DISABLED,
        ServerlessV2ScalingConfiguration=scaling(config),
        DatabaseName=db.database_name,
        Port=PORT,
        MasterUsername=MASTER_USERNAME,
        ManageMasterUserPassword=True,
        MasterUserSecret=rds.MasterUserSecret(KmsKeyId=data_key),
        StorageEncrypted=True,
        KmsKeyId=data_key,
        DBSubnetGroupName=Ref(subnets),
        VpcSecurityGroupIds=[Ref("DatabaseSecurityGroupId")],
        DBClusterParameterGroupName=Ref(parameters),
        EnableIAMDatabaseAuthentication=True,
        EnableCloudwatchLogsExports=["postgresql"],
        PerformanceInsightsEnabled=True,
        PerformanceInsightsKmsKeyId=data_key,
        PerformanceInsightsRetentionPeriod=db.performance_insights_retention_days,
        DatabaseInsightsMode=DATABASE_INSIGHTS_MODE,
        BackupRetentionPeriod=db.backup_retention_days,
        PreferredBackupWindow=db.backup_window,
        PreferredMaintenanceWindow=db.maintenance_window,
        DeleteAutomatedBackups=False,
        DeletionProtection=db.deletion_protection,
        CopyTagsToSnapshot=True,
        AutoMinorVersionUpgrade=True,
        DependsOn=[logs],
    )
    cluster.DeletionPolicy = "Snapshot"
    cluster.UpdateReplacePolicy = "Snapshot"
    template.add_resource(describe(cluster, "Aurora Serverless v2 PostgreSQL cluster"))

    instances = [("WriterInstance", 0, "writer")]
    if db.reader:
        instances.append(("ReaderInstance", 1, "reader (another AZ, scales with the writer)"))
    for logical_id, index, role in instances:
        instance = rds.DBInstance(
            logical_id,
            Engine=ENGINE,
            DBClusterIdentifier=Ref(cluster),
            DBInstanceClass="db.serverless",
            # Tier 0/1 readers keep at least the writer's capacity, so a failover lands on a warm instance.
            PromotionTier=index,
            AvailabilityZone=Select(index, GetAZs(Ref("AWS::Region"))),
            PubliclyAccessible=False,
            AutoMinorVersionUpgrade=True,
            PreferredMaintenanceWindow=db.maintenance_window,
            # Same values as the cluster-level settings (which also cover future instances); they
            # must match the cluster; set here too so the instance-level view is explicit.
            EnablePerformanceInsights=True,
            PerformanceInsightsKMSKeyId=data_key,
            PerformanceInsightsRetentionPeriod=db.performance_insights_retention_days,
        )
        retention_policies(instance, retain=False)  # storage, backups and snapshots belong to the cluster
        skip_checkov(instance, "CKV_AWS_118", "Enhanced Monitoring writes to the account-wide RDSOSMetrics "
                     "log group, which the kit cannot encrypt with its key; Database Insights and "
                     "CloudWatch metrics cover the instance.")
        skip_checkov(instance, "CKV_AWS_157", "Aurora instance: durability and failover come from the "
                     "cluster's storage across three AZs and the reader in another AZ, not from MultiAZ.")
        template.add_resource(describe(instance, f"Aurora Serverless v2 {role}"))
    return cluster


def _content(template: Template, config: EnvironmentConfig) -> s3.Bucket:
    storage = config.storage
    logs = access_log_bucket(template, "AccessLogBucket",
                             description="S3 server access logs of the content bucket",
                             expiration_days=storage.access_log_expiration_days, retain=True)
    return secure_bucket(
        template, "ContentBucket",
        description="Content bucket for uploads and generated assets",
        kms_key_arn=Ref("DataKeyArn"),
        retain=True,
        access_log_bucket=Ref(logs),
        access_log_prefix="content/",
        lifecycle_rules=[
            s3.LifecycleRule(
                Id="TieringAndCleanup",
                Status="Enabled",
                Transitions=[s3.LifecycleRuleTransition(
                    StorageClass="INTELLIGENT_TIERING",
                    TransitionInDays=storage.intelligent_tiering_after_days)],
                NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(
                    NoncurrentDays=storage.noncurrent_version_expiration_days),
                AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(
                    DaysAfterInitiation=storage.abort_incomplete_upload_days),
            ),
            s3.LifecycleRule(Id="RemoveExpiredDeleteMarkers", Status="Enabled",
                             ExpiredObjectDeleteMarker=True),
        ],
        cors_rules=[s3.CorsRules(
            Id="FrontendUploads",
            AllowedOrigins=Split(",", Ref("FrontendOrigins")),
            AllowedMethods=["GET", "PUT", "POST", "HEAD"],
            AllowedHeaders=["Content-Type", "Content-MD5", "Content-Disposition", "Cache-Control", "x-amz-*"],
            ExposedHeaders=["ETag", "x-amz-version-id"],
            MaxAge=CORS_MAX_AGE_SECONDS,
        )],
    )


def _backup(template: Template, config: EnvironmentConfig, cluster: rds.DBCluster) -> backup.BackupVault:
    vault = backup.BackupVault(
        "BackupVault",
        BackupVaultName=naming.backup_vault_name(config),
        EncryptionKeyArn=Ref("DataKeyArn"),
        BackupVaultTags=naming.environment_tags(config, COMPONENT),  # not `Tags`, so apply_tags skips it
    )
    retention_policies(vault, retain=True)
    template.add_resource(describe(vault, "AWS Backup vault (KMS)"))

    plan = template.add_resource(describe(backup.BackupPlan(
        "BackupPlan",
        BackupPlan=backup.BackupPlanResourceType(
            BackupPlanName=naming.backup_plan_name(config),
            BackupPlanRule=[backup.BackupRuleResourceType(
                RuleName="Daily",
                TargetBackupVault=Ref(vault),
                ScheduleExpression=config.backup.schedule,
                ScheduleExpressionTimezone="Etc/UTC",
                StartWindowMinutes=BACKUP_START_WINDOW_MINUTES,
                CompletionWindowMinutes=BACKUP_COMPLETION_WINDOW_MINUTES,
                Lifecycle=backup.LifecycleResourceType(DeleteAfterDays=config.backup.retention_days),
            )],
        ),
        BackupPlanTags=naming.environment_tags(config, COMPONENT),
    ), "Daily AWS Backup plan"))

    role = template.add_resource(describe(iam.Role(
        "BackupRole",
        AssumeRolePolicyDocument=make_simple_assume_policy("backup.amazonaws.com"),
        ManagedPolicyArns=[
            Sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"),
            Sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores"),
        ],
        Policies=[iam.Policy(
            PolicyName="use-data-key",
            PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[
                # Aurora snapshots stay under the cluster's key: backup and restore use it.
                # https://docs.aws.amazon.com/aws-backup/latest/devguide/encryption.html
                Statement(
                    Sid="UseDataKey",
                    Effect=Allow,
                    Action=[awacs_kms.Decrypt, awacs_kms.DescribeKey, awacs_kms.GenerateDataKey,
                            awacs_kms.ReEncryptFrom, awacs_kms.ReEncryptTo],
                    Resource=[Ref("DataKeyArn")],
                ),
                Statement(
                    Sid="GrantDataKeyToAwsResources",
                    Effect=Allow,
                    Action=[awacs_kms.CreateGrant],
                    Resource=[Ref("DataKeyArn")],
                    Condition=Condition(Bool("kms:GrantIsForAWSResource", True)),
                ),
            ]),
        )],
    ), "Role AWS Backup assumes to back up and restore the Aurora cluster"))

    template.add_resource(describe(backup.BackupSelection(
        "BackupSelection",
        BackupPlanId=Ref(plan),
        BackupSelection=backup.BackupSelectionResourceType(
            SelectionName="aurora-cluster",
            IamRoleArn=GetAtt(role, "Arn"),
            Resources=[GetAtt(cluster, "DBClusterArn")],
        ),
    ), "AWS Backup selection: the Aurora cluster"))
    return vault


def _data_access_policy(template: Template, config: EnvironmentConfig, cluster: rds.DBCluster,
                        bucket: s3.Bucket) -> iam.ManagedPolicy:
    secret_arn = GetAtt(cluster, "MasterUserSecret.SecretArn")
    bucket_arn = GetAtt(bucket, "Arn")
    via_services = [Sub("secretsmanager.${AWS::Region}.amazonaws.com"),
                    Sub("s3.${AWS::Region}.amazonaws.com")]
    document = PolicyDocument(Version="2012-10-17", Statement=[
        Statement(Sid="ReadDatabaseSecret", Effect=Allow,
                  Action=[awacs_sm.GetSecretValue, awacs_sm.DescribeSecret], Resource=[secret_arn]),
        Statement(Sid="UseDataKeyThroughSecretsManagerAndS3", Effect=Allow,
                  Action=[awacs_kms.Decrypt, awacs_kms.GenerateDataKey], Resource=[Ref("DataKeyArn")],
                  Condition=Condition(StringEquals("kms:ViaService", via_services))),
        Statement(Sid="ReadWriteContentObjects", Effect=Allow,
                  Action=[awacs_s3.GetObject, awacs_s3.GetObjectVersion, awacs_s3.PutObject,
                          awacs_s3.DeleteObject, awacs_s3.AbortMultipartUpload,
                          awacs_s3.ListMultipartUploadParts],
                  Resource=[Sub(f"${{{bucket.title}.Arn}}/*")]),
        Statement(Sid="ListContentBucket", Effect=Allow, Action=[awacs_s3.ListBucket], Resource=[bucket_arn]),
    ])
    return template.add_resource(describe(iam.ManagedPolicy(
        "DataAccessPolicy",
        Description=f"{config.app_name} {config.name}: backend access to the DB secret and content bucket",
        PolicyDocument=document,
    ), "Least-privilege policy the backend attaches: DB secret, data key, content bucket"))


def build(config: EnvironmentConfig) -> Template:
    """Data stack of one environment: Aurora PostgreSQL, the content bucket, AWS Backup, the data-access policy.

    Parameters: DataKeyArn, OpsKeyArn (from the security stack), DataSubnetIds, DatabaseSecurityGroupId (from the
    network stack), FrontendOrigins (from the frontend stack). Outputs: ClusterIdentifier,
    WriterInstanceIdentifier, ReaderInstanceIdentifier and DatabaseReaderEndpoint (with a reader),
    DatabaseEndpoint, DatabasePort, DatabaseName, DatabaseSecretArn, ContentBucketName, ContentBucketArn,
    BackupVaultName, DataAccessPolicyArn. Raises: ValueError when a capacity is not 0..256 ACU in 0.5 steps;
    naming.NamingError when a generated AWS name breaks its service's limit.
    """
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    for name, text in PARAMETERS.items():
        add_parameter(template, name, text)

    cluster = _database(template, config)
    bucket = _content(template, config)
    vault = _backup(template, config, cluster)
    policy = _data_access_policy(template, config, cluster, bucket)

    add_output(template, "ClusterIdentifier", Ref(cluster), "Aurora cluster identifier")
    add_output(template, "WriterInstanceIdentifier", Ref("WriterInstance"), "Writer instance identifier")
    if config.database.reader:
        add_output(template, "ReaderInstanceIdentifier", Ref("ReaderInstance"), "Reader instance identifier")
    add_output(template, "DatabaseEndpoint", GetAtt(cluster, "Endpoint.Address"), "Writer endpoint host name")
    add_output(template, "DatabaseReaderEndpoint", GetAtt(cluster, "ReadEndpoint.Address"),
               "Reader endpoint host name")
    add_output(template, "DatabasePort", GetAtt(cluster, "Endpoint.Port"), "PostgreSQL port")
    add_output(template, "DatabaseName", config.database.database_name, "Name of the application database")
    add_output(template, "DatabaseSecretArn", GetAtt(cluster, "MasterUserSecret.SecretArn"),
               "Aurora-managed master secret (rotated by RDS; the app re-reads it on auth failure)")
    add_output(template, "ContentBucketName", Ref(bucket), "Content bucket name")
    add_output(template, "ContentBucketArn", GetAtt(bucket, "Arn"), "Content bucket ARN")
    add_output(template, "DataAccessPolicyArn", Ref(policy), "Managed policy for the backend's data access")
    add_output(template, "BackupVaultName", Ref(vault), "AWS Backup vault name")
    return template


SPEC = StackSpec(name="data", component=COMPONENT, description=DESCRIPTION, build=build)
