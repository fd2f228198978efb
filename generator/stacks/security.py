"""Security stack: the environment's customer-managed KMS keys and its CloudTrail audit trail.

- DataKey: data at rest (Aurora storage, Performance Insights and managed master secret; S3 content
  bucket; Secrets Manager; AWS Backup; App Runner encryption configuration).
- OpsKey: operations data (CloudWatch Logs groups; the SNS alert topic and its AWS publishers).
- TrailKey: CloudTrail log files (only when `security.cloudtrail` is on; off by default, since the account-level
  trail of the bootstrap stack records every environment: docs/stack-security.md).
"""

from __future__ import annotations

from awacs import kms as k
from awacs.aws import Allow, ArnLike, Condition, Principal, Statement, StringEquals
from troposphere import GetAtt, Ref, Sub, Template

from generator import naming
from generator.cfn import add_output, new_template
from generator.config import EnvironmentConfig
from generator.stacks._kms import cloudwatch_logs, customer_key, use_through
from generator.stacks._trail import TRAIL_BUCKET, add_trail
from generator.stacks.spec import StackSpec

COMPONENT = "security"
DESCRIPTION = "Customer-managed KMS keys and the CloudTrail audit trail"

ACCOUNT = Ref("AWS::AccountId")
# Services that encrypt this environment's data at rest with DataKey, and those among them that create
# KMS grants for the resources they run (Aurora storage, backup recovery points, App Runner).
DATA_KEY_SERVICES = ("rds", "s3", "secretsmanager", "backup", "apprunner")
DATA_KEY_GRANT_SERVICES = ("rds", "backup", "apprunner")


def data_key_services(config: EnvironmentConfig) -> tuple[str, ...]:
    """Services that may use DataKey on a caller's behalf; SQS (the worker run queue) only with workers."""
    return DATA_KEY_SERVICES + (("sqs",) if config.workers.enabled else ())


def _data_key(template: Template, config: EnvironmentConfig):
    # App Runner uses the EncryptionConfiguration key "to encrypt copies of the source repository and service
    # logs" (https://docs.aws.amazon.com/apprunner/latest/api/API_EncryptionConfiguration.html), so CloudWatch
    # Logs may use this key, for App Runner's own log groups of this account only (docs/stack-security.md).
    app_runner_logs = cloudwatch_logs("CloudWatchLogsForAppRunnerLogGroups", "/aws/apprunner/*")
    queue = ", SQS run queue" if config.workers.enabled else ""
    return customer_key(
        template, "DataKey", alias=naming.kms_alias(config, "data"),
        description=f"{config.app_name} {config.name}: data at rest (Aurora, S3 content, Secrets Manager, "
                    f"AWS Backup, App Runner{queue})",
        statements=[*use_through(data_key_services(config), DATA_KEY_GRANT_SERVICES), app_runner_logs])


def _publisher(sid: str, service: str, source_arn: str | None) -> Statement:
    """An AWS service that publishes to the KMS-encrypted alert topic (SNS asks KMS on its behalf)."""
    conditions = [StringEquals("aws:SourceAccount", ACCOUNT)]
    if source_arn:
        conditions.append(ArnLike("aws:SourceArn", Sub(source_arn)))
    return Statement(Sid=sid, Effect=Allow, Principal=Principal("Service", service),
                     Action=[k.GenerateDataKey, k.Decrypt], Resource=["*"], Condition=Condition(conditions))


def _ops_key(template: Template, config: EnvironmentConfig):
    logs = cloudwatch_logs("CloudWatchLogsForThisAccountsLogGroups", "*")
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


def _trail(template: Template, config: EnvironmentConfig) -> None:
    security = config.security
    add_trail(template, name=naming.trail_name(config), alias=naming.kms_alias(config, "trail"),
              owner=f"{config.app_name} {config.name}", retention_days=security.trail_log_retention_days,
              archive_after_days=security.trail_log_archive_after_days,
              access_log_expiration_days=config.storage.access_log_expiration_days)


def build(config: EnvironmentConfig) -> Template:
    """Security stack of one environment: the data and operations KMS keys, optionally the CloudTrail trail.

    Parameters: none. Outputs: DataKeyArn, OpsKeyArn, and AuditTrailBucketName when `security.cloudtrail` is on.
    Raises: naming.NamingError when a generated AWS name breaks its service's limit.
    """
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
