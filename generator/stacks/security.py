"""Security stack: the environment's customer-managed KMS keys and its CloudTrail audit trail.

- DataKey: data at rest (Aurora storage, Performance Insights and managed master secret; S3 content
  bucket; Secrets Manager; AWS Backup; App Runner encryption configuration).
- OpsKey: operations data (CloudWatch Logs groups; the SNS alert topic and its AWS publishers).
- TrailKey: CloudTrail log files (only when `security.cloudtrail` is on).
"""

from __future__ import annotations

from awacs import kms as k
from awacs import s3 as awacs_s3
from awacs.aws import Allow, ArnLike, Condition, Null, Principal, Statement, StringEquals, StringLike
from troposphere import GetAtt, Ref, Sub, Template, cloudtrail, s3

from generator import naming
from generator.cfn import add_output, describe, new_template
from generator.components import access_log_bucket, secure_bucket
from generator.config import EnvironmentConfig
from generator.stacks._kms import customer_key, regional_endpoint, use_through
from generator.stacks.spec import StackSpec

COMPONENT = "security"
DESCRIPTION = "Customer-managed KMS keys and the CloudTrail audit trail"

ACCOUNT = Ref("AWS::AccountId")
# Services that encrypt this environment's data at rest with DataKey, and those among them that create
# KMS grants for the resources they run (Aurora storage, backup recovery points, App Runner).
DATA_KEY_SERVICES = ("rds", "s3", "secretsmanager", "backup", "apprunner")
DATA_KEY_GRANT_SERVICES = ("rds", "backup", "apprunner")
TRAIL_BUCKET = "TrailBucket"


def data_key_services(config: EnvironmentConfig) -> tuple[str, ...]:
    """Services that may use DataKey on a caller's behalf; SQS (the worker run queue) only with workers."""
    return DATA_KEY_SERVICES + (("sqs",) if config.workers.enabled else ())


def _data_key(template: Template, config: EnvironmentConfig):
    queue = ", SQS run queue" if config.workers.enabled else ""
    return customer_key(
        template, "DataKey", alias=naming.kms_alias(config, "data"),
        description=f"{config.app_name} {config.name}: data at rest (Aurora, S3 content, Secrets Manager, "
                    f"AWS Backup, App Runner{queue})",
        statements=use_through(data_key_services(config), DATA_KEY_GRANT_SERVICES))


def _publisher(sid: str, service: str, source_arn: str | None) -> Statement:
    """An AWS service that publishes to the KMS-encrypted alert topic (SNS asks KMS on its behalf)."""
    conditions = [StringEquals("aws:SourceAccount", ACCOUNT)]
    if source_arn:
        conditions.append(ArnLike("aws:SourceArn", Sub(source_arn)))
    return Statement(Sid=sid, Effect=Allow, Principal=Principal("Service", service),
                     Action=[k.GenerateDataKey, k.Decrypt], Resource=["*"], Condition=Condition(conditions))


def _ops_key(template: Template, config: EnvironmentConfig):
    logs = Statement(
        Sid="CloudWatchLogsForThisAccountsLogGroups",
        Effect=Allow,
        Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
        Action=[k.Encrypt, k.Decrypt, k.ReEncryptFrom, k.ReEncryptTo, k.GenerateDataKey,
                k.GenerateDataKeyWithoutPlaintext, k.DescribeKey],
        Resource=["*"],
        Condition=Condition(ArnLike(
            "kms:EncryptionContext:aws:logs:arn",
            Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"))),
    )
    return customer_key(
        template, "OpsKey", alias=naming.kms_alias(config, "ops"),
        description=f"{config.app_name} {config.name}: operations data (CloudWatch Logs, SNS alert topic)",
        statements=[
            *use_through(["sns"]),
            logs,
            _publisher("CloudWatchAlarmsPublishAlerts", "cloudwatch.amazonaws.com",
                       "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"),
            _publisher("BudgetsPublishAlerts", "budgets.amazonaws.com",
                       "arn:${AWS::Partition}:budgets::${AWS::AccountId}:*"),
            # Cost Anomaly Detection's source ARN format is not documented well enough to pin; account only.
            _publisher("CostAnomalyDetectionPublishAlerts", "costalerts.amazonaws.com", None),
            # EventBridge forwards stopped worker tasks that exited non-zero (monitoring stack).
            *([_publisher("EventBridgePublishesWorkerTaskFailures", "events.amazonaws.com",
                          "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/*")]
              if config.workers.enabled else []),
        ])


def _trail_arn(config: EnvironmentConfig) -> Sub:
    return Sub(f"arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:trail/"
               f"{naming.trail_name(config)}")


def _trail_key(template: Template, config: EnvironmentConfig):
    trail_context = Sub("arn:${AWS::Partition}:cloudtrail:*:${AWS::AccountId}:trail/*")
    return customer_key(
        template, "TrailKey", alias=naming.kms_alias(config, "trail"),
        description=f"{config.app_name} {config.name}: CloudTrail log files",
        statements=[
            Statement(
                Sid="CloudTrailEncryptsThisTrailsLogs", Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[k.GenerateDataKey], Resource=["*"],
                Condition=Condition([
                    StringEquals("aws:SourceArn", _trail_arn(config)),
                    StringLike("kms:EncryptionContext:aws:cloudtrail:arn", trail_context),
                ]),
            ),
            Statement(
                Sid="CloudTrailDescribesKey", Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[k.DescribeKey], Resource=["*"],
                Condition=Condition(StringEquals("aws:SourceArn", _trail_arn(config))),
            ),
            Statement(
                Sid="ThisAccountReadsTrailLogsThroughS3", Effect=Allow,
                Principal=Principal("AWS", Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")),
                Action=[k.Decrypt], Resource=["*"],
                Condition=Condition([
                    StringEquals({"kms:CallerAccount": ACCOUNT, "kms:ViaService": regional_endpoint("s3")}),
                    Null("kms:EncryptionContext:aws:cloudtrail:arn", "false"),
                ]),
            ),
        ])


def _trail_bucket(template: Template, config: EnvironmentConfig) -> s3.Bucket:
    security = config.security
    logs = access_log_bucket(
        template, "TrailAccessLogBucket", description="S3 access logs of the CloudTrail bucket",
        expiration_days=config.storage.access_log_expiration_days, retain=True)
    bucket_arn = Sub(f"arn:${{AWS::Partition}}:s3:::${{{TRAIL_BUCKET}}}")
    trail_arn = _trail_arn(config)
    rule = s3.LifecycleRule(
        Id="RetainTrailLogs", Status="Enabled", ExpirationInDays=security.trail_log_retention_days,
        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=30),
        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=1))
    if security.trail_log_archive_after_days:
        rule.Transitions = [s3.LifecycleRuleTransition(
            StorageClass="GLACIER_IR", TransitionInDays=security.trail_log_archive_after_days)]
    bucket = secure_bucket(
        template, TRAIL_BUCKET,
        description="CloudTrail log bucket (log files SSE-KMS with TrailKey, set by CloudTrail per object)",
        # Default encryption SSE-S3: CloudTrail encrypts every log file with TrailKey itself, and writes its
        # digest files with SSE-S3 by design; a bucket-level KMS default (and its S3 Bucket Key) would change
        # the encryption context CloudTrail's key policy relies on.
        kms_key_arn=None,
        retain=True,
        lifecycle_rules=[rule],
        access_log_bucket=Ref(logs),
        access_log_prefix="trail-bucket/",
        extra_policy_statements=[
            Statement(
                Sid="CloudTrailChecksBucketAcl", Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[awacs_s3.GetBucketAcl], Resource=[bucket_arn],
                Condition=Condition(StringEquals("aws:SourceArn", trail_arn)),
            ),
            Statement(
                Sid="CloudTrailWritesThisAccountsLogs", Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[awacs_s3.PutObject],
                Resource=[Sub(f"arn:${{AWS::Partition}}:s3:::${{{TRAIL_BUCKET}}}/AWSLogs/${{AWS::AccountId}}/*")],
                Condition=Condition(StringEquals({"s3:x-amz-acl": "bucket-owner-full-control",
                                                  "aws:SourceArn": trail_arn})),
            ),
        ],
    )
    return bucket


def _trail(template: Template, config: EnvironmentConfig) -> cloudtrail.Trail:
    key = _trail_key(template, config)
    bucket = _trail_bucket(template, config)
    trail = cloudtrail.Trail(
        "Trail",
        TrailName=naming.trail_name(config),
        S3BucketName=Ref(bucket),
        KMSKeyId=GetAtt(key, "Arn"),
        IsLogging=True,
        IsMultiRegionTrail=True,
        IncludeGlobalServiceEvents=True,
        EnableLogFileValidation=True,
        # CreateTrail verifies the bucket policy, so the policy must exist first.
        DependsOn=[f"{TRAIL_BUCKET}Policy"],
    )
    template.add_resource(describe(trail, "CloudTrail trail: all regions, global service events, "
                                          "log-file validation, KMS-encrypted"))
    return trail


def build(config: EnvironmentConfig) -> Template:
    template = new_template(f"{config.app_name} {config.name}: {DESCRIPTION}")
    data_key = _data_key(template, config)
    ops_key = _ops_key(template, config)
    if config.security.cloudtrail:
        _trail(template, config)
        add_output(template, "AuditTrailBucketName", Ref(TRAIL_BUCKET), "S3 bucket holding the CloudTrail logs")
    add_output(template, "DataKeyArn", GetAtt(data_key, "Arn"), "KMS key for data at rest")
    add_output(template, "OpsKeyArn", GetAtt(ops_key, "Arn"), "KMS key for logs and the alert topic")
    return template


SPEC = StackSpec(name="security", component=COMPONENT, description=DESCRIPTION, build=build)
