"""Secure-by-default resource factories shared by the stack builders.

Each factory adds its resources to the template it is given and returns the main one. Opt-outs are
explicit keyword arguments; nothing is left to a service default that a reviewer would have to know.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from awacs import iam as awacs_iam
from awacs import logs as awacs_logs
from awacs import s3 as awacs_s3
from awacs.aws import Allow, ArnLike, Bool, Condition, Deny, PolicyDocument, Principal, Statement, StringEquals
from awacs.helpers.trust import make_simple_assume_policy
from awacs.sts import AssumeRole
from troposphere import AWSHelperFn, GetAtt, Ref, Sub, Template, awslambda, iam, logs, s3

from generator.cfn import describe, skip_checkov

# DeletionPolicy for what must outlive its stack. RetainExceptOnCreate keeps the resource on stack deletion
# and on removal from the template, but deletes it when the stack operation that created it rolls back, so a
# retry after a failed first create never meets an orphan with the same physical name (AlreadyExists).
# UpdateReplacePolicy does not accept RetainExceptOnCreate (Delete | Retain | Snapshot only):
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-updatereplacepolicy.html
KEEP_ON_DELETE = "RetainExceptOnCreate"
KEEP_ON_REPLACE = "Retain"


def retention_policies(resource, retain: bool):
    """Explicit DeletionPolicy and UpdateReplacePolicy: kept (KEEP_ON_DELETE / KEEP_ON_REPLACE) for data we
    must not lose, else Delete."""
    resource.DeletionPolicy = KEEP_ON_DELETE if retain else "Delete"
    resource.UpdateReplacePolicy = KEEP_ON_REPLACE if retain else "Delete"
    return resource


# ---- IAM ----------------------------------------------------------------------------------------

def service_trust(service: str, source_arn: str) -> PolicyDocument:
    """Trust policy for an AWS service principal, limited to acting for this account and for resources
    matching `source_arn` (a Sub pattern), so no other account can make the service assume the role
    (the confused-deputy problem)."""
    return PolicyDocument(Version="2012-10-17", Statement=[Statement(
        Effect=Allow,
        Principal=Principal("Service", service),
        Action=[AssumeRole],
        Condition=Condition([
            StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
            ArnLike("aws:SourceArn", Sub(source_arn)),
        ]),
    )])


# ---- S3 -----------------------------------------------------------------------------------------

def deny_insecure_transport(actions: Sequence, resources: Sequence) -> Statement:
    """Resource-policy statement DenyInsecureTransport: any principal is denied `actions` on `resources` when
    the request does not use TLS (aws:SecureTransport false)."""
    return Statement(
        Sid="DenyInsecureTransport",
        Effect=Deny,
        Principal=Principal("*"),
        Action=list(actions),
        Resource=list(resources),
        Condition=Condition(Bool("aws:SecureTransport", False)),
    )


def tls_only_statements(bucket_logical_id: str) -> list[Statement]:
    """Deny any request that does not use TLS (bucket and objects)."""
    return [deny_insecure_transport([awacs_s3.Action("*")],
                                    [GetAtt(bucket_logical_id, "Arn"), Sub(f"${{{bucket_logical_id}.Arn}}/*")])]


def secure_bucket(
    template: Template,
    logical_id: str,
    *,
    description: str,
    kms_key_arn: AWSHelperFn | None,
    retain: bool = True,
    versioned: bool = True,
    lifecycle_rules: Sequence[s3.LifecycleRule] = (),
    access_log_bucket: AWSHelperFn | None = None,
    access_log_prefix: str | None = None,
    cors_rules: Sequence[s3.CorsRules] = (),
    extra_policy_statements: Iterable[Statement] = (),
) -> s3.Bucket:
    """A bucket with SSE-KMS (bucket key) or, when kms_key_arn is None, SSE-S3 (only for S3 access-log
    buckets, which S3 log delivery cannot write with KMS); versioning; all public access blocked;
    ACLs disabled (BucketOwnerEnforced); a TLS-only bucket policy; optional access logging."""
    if kms_key_arn is None:
        encryption = s3.ServerSideEncryptionByDefault(SSEAlgorithm="AES256")
        bucket_key = None
    else:
        encryption = s3.ServerSideEncryptionByDefault(SSEAlgorithm="aws:kms", KMSMasterKeyID=kms_key_arn)
        bucket_key = True
    rule = s3.ServerSideEncryptionRule(ServerSideEncryptionByDefault=encryption)
    if bucket_key:
        rule.BucketKeyEnabled = True
    bucket = s3.Bucket(
        logical_id,
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[rule]),
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True),
        OwnershipControls=s3.OwnershipControls(Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
    )
    if versioned:
        bucket.VersioningConfiguration = s3.VersioningConfiguration(Status="Enabled")
    if lifecycle_rules:
        bucket.LifecycleConfiguration = s3.LifecycleConfiguration(Rules=list(lifecycle_rules))
    if access_log_bucket is not None:
        bucket.LoggingConfiguration = s3.LoggingConfiguration(
            DestinationBucketName=access_log_bucket, LogFilePrefix=access_log_prefix or f"{logical_id}/")
    if cors_rules:
        bucket.CorsConfiguration = s3.CorsConfiguration(CorsRules=list(cors_rules))
    describe(bucket, description)
    retention_policies(bucket, retain)
    template.add_resource(bucket)

    statements = tls_only_statements(logical_id) + list(extra_policy_statements)
    template.add_resource(describe(s3.BucketPolicy(
        f"{logical_id}Policy",
        Bucket=Ref(bucket),
        PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=statements),
    ), f"Bucket policy of {description[0].lower() + description[1:]}: TLS only"))
    return bucket


def access_log_bucket(template: Template, logical_id: str, *, description: str, expiration_days: int,
                      retain: bool, source_account: AWSHelperFn | None = None) -> s3.Bucket:
    """Target bucket for S3 server access logs: SSE-S3 (log delivery does not support SSE-KMS)."""
    source = source_account or Ref("AWS::AccountId")
    delivery = Statement(
        Sid="AllowS3ServerAccessLogDelivery",
        Effect=Allow,
        Principal=Principal("Service", "logging.s3.amazonaws.com"),
        Action=[awacs_s3.PutObject],
        Resource=[Sub(f"arn:${{AWS::Partition}}:s3:::${{{logical_id}}}/*")],
        Condition=Condition(StringEquals("aws:SourceAccount", source)),
    )
    bucket = secure_bucket(
        template, logical_id, description=description, kms_key_arn=None, retain=retain,
        lifecycle_rules=[
            s3.LifecycleRule(Id="ExpireAccessLogs", Status="Enabled", ExpirationInDays=expiration_days,
                             NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=7),
                             AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(
                                 DaysAfterInitiation=1)),
        ],
        extra_policy_statements=[delivery],
    )
    skip_checkov(bucket, "CKV_AWS_18", "This is the access-log target bucket; logging it into itself would loop.")
    return bucket


# ---- CloudWatch Logs ----------------------------------------------------------------------------

def log_group(template: Template, logical_id: str, *, description: str, kms_key_arn: AWSHelperFn,
              retention_days: int, retain: bool, name: AWSHelperFn | str | None = None) -> logs.LogGroup:
    """KMS-encrypted log group with explicit retention and deletion policies."""
    group = logs.LogGroup(logical_id, KmsKeyId=kms_key_arn, RetentionInDays=retention_days)
    if name is not None:
        group.LogGroupName = name
    describe(group, description)
    retention_policies(group, retain)
    return template.add_resource(group)


# ---- Lambda-backed custom resources -------------------------------------------------------------

LAMBDA_RUNTIME = "python3.13"


def inline_function(
    template: Template,
    logical_id: str,
    *,
    description: str,
    code: str,
    statements: Sequence[Statement],
    kms_key_arn: AWSHelperFn,
    log_retention_days: int,
    retain_logs: bool,
    timeout: int = 300,
) -> awslambda.Function:
    """A small inline Python function for a custom resource, with its own least-privilege role and a
    KMS-encrypted log group. Custom resources are invoked synchronously by CloudFormation only."""
    group = log_group(template, f"{logical_id}Logs", description=f"Logs of: {description}",
                      kms_key_arn=kms_key_arn, retention_days=log_retention_days, retain=retain_logs)
    write_logs = Statement(
        Sid="WriteOwnLogs",
        Effect=Allow,
        Action=[awacs_logs.CreateLogStream, awacs_logs.PutLogEvents],
        Resource=[GetAtt(group, "Arn")],
    )
    role = template.add_resource(describe(iam.Role(
        f"{logical_id}Role",
        AssumeRolePolicyDocument=make_simple_assume_policy("lambda.amazonaws.com"),
        Policies=[iam.Policy(
            PolicyName="custom-resource",
            PolicyDocument=PolicyDocument(Version="2012-10-17", Statement=[write_logs, *statements]),
        )],
    ), f"Role of: {description}"))
    logging_config = awslambda.LoggingConfig(LogGroup=Ref(group))
    logging_config.properties["LogFormat"] = "JSON"  # in the CFN schema; troposphere 4.11 lacks the prop
    function = awslambda.Function(
        logical_id,
        Description=description[:256],
        Runtime=LAMBDA_RUNTIME,
        Handler="index.handler",
        Code=awslambda.Code(ZipFile=code),
        Role=GetAtt(role, "Arn"),
        Timeout=timeout,
        MemorySize=256,
        LoggingConfig=logging_config,
    )
    describe(function, description)
    skip_checkov(function, "CKV_AWS_115", "Custom-resource handler invoked only by CloudFormation; reserving "
                 "concurrency can fail in new accounts whose unreserved pool is at the minimum of 10.")
    skip_checkov(function, "CKV_AWS_116", "Invoked synchronously by CloudFormation, which reports failures; "
                 "a dead-letter queue would never receive anything.")
    skip_checkov(function, "CKV_AWS_117", "Calls only AWS control-plane APIs; placing it in the VPC would add "
                 "NAT dependency and ENI cost for no isolation benefit.")
    skip_checkov(function, "CKV_AWS_173", "The function has no environment variables to encrypt.")
    return template.add_resource(function)


def never_touch_iam() -> Statement:
    """Defence in depth for an application role: whatever a future policy attachment grants, it never touches
    IAM (an explicit Deny wins over any Allow)."""
    return Statement(Sid="NeverTouchIam", Effect=Deny, Action=[awacs_iam.Action("*")], Resource=["*"])
