"""A multi-region CloudTrail trail with its own KMS key and log bucket (plus the bucket's access-log bucket).

Used by the bootstrap stack for the one account-level trail (the default) and by an environment's security
stack when that environment opts in (`security.cloudtrail = true`). One trail per account records every
environment: a second trail in the same account bills management events ($2 per 100,000, and with an
organization trail every account trail is a paid copy): https://aws.amazon.com/cloudtrail/pricing/
"""

from __future__ import annotations

from awacs import kms as k
from awacs import s3 as awacs_s3
from awacs.aws import Allow, Condition, Null, Principal, Statement, StringEquals, StringLike
from troposphere import GetAtt, Ref, Sub, Template, cloudtrail, s3

from generator.cfn import describe
from generator.components import access_log_bucket, secure_bucket
from generator.stacks._kms import customer_key, regional_endpoint

ACCOUNT = Ref("AWS::AccountId")
TRAIL_BUCKET = "TrailBucket"


def trail_arn(name: str) -> Sub:
    return Sub(f"arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:trail/{name}")


def _trail_key(template: Template, *, name: str, alias: str, owner: str):
    trail_context = Sub("arn:${AWS::Partition}:cloudtrail:*:${AWS::AccountId}:trail/*")
    return customer_key(
        template, "TrailKey", alias=alias,
        description=f"{owner}: CloudTrail log files",
        statements=[
            Statement(
                Sid="CloudTrailEncryptsThisTrailsLogs", Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[k.GenerateDataKey], Resource=["*"],
                Condition=Condition([
                    StringEquals("aws:SourceArn", trail_arn(name)),
                    StringLike("kms:EncryptionContext:aws:cloudtrail:arn", trail_context),
                ]),
            ),
            Statement(
                Sid="CloudTrailDescribesKey", Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[k.DescribeKey], Resource=["*"],
                Condition=Condition(StringEquals("aws:SourceArn", trail_arn(name))),
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


def _trail_bucket(template: Template, *, name: str, retention_days: int, archive_after_days: int,
                  access_log_expiration_days: int) -> s3.Bucket:
    logs = access_log_bucket(
        template, "TrailAccessLogBucket", description="S3 access logs of the CloudTrail bucket",
        expiration_days=access_log_expiration_days, retain=True)
    bucket_arn = Sub(f"arn:${{AWS::Partition}}:s3:::${{{TRAIL_BUCKET}}}")
    arn = trail_arn(name)
    rule = s3.LifecycleRule(
        Id="RetainTrailLogs", Status="Enabled", ExpirationInDays=retention_days,
        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=30),
        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=1))
    if archive_after_days:
        rule.Transitions = [s3.LifecycleRuleTransition(StorageClass="GLACIER_IR", TransitionInDays=archive_after_days)]
    return secure_bucket(
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
                Condition=Condition(StringEquals("aws:SourceArn", arn)),
            ),
            Statement(
                Sid="CloudTrailWritesThisAccountsLogs", Effect=Allow,
                Principal=Principal("Service", "cloudtrail.amazonaws.com"),
                Action=[awacs_s3.PutObject],
                Resource=[Sub(f"arn:${{AWS::Partition}}:s3:::${{{TRAIL_BUCKET}}}/AWSLogs/${{AWS::AccountId}}/*")],
                Condition=Condition(StringEquals({"s3:x-amz-acl": "bucket-owner-full-control",
                                                  "aws:SourceArn": arn})),
            ),
        ],
    )


def add_trail(template: Template, *, name: str, alias: str, owner: str, retention_days: int,
              archive_after_days: int, access_log_expiration_days: int) -> cloudtrail.Trail:
    """Adds TrailKey (+ alias `alias`), TrailBucket, TrailAccessLogBucket and the trail `name` (all regions,
    global service events, log-file validation). Retention and archive ages in days; archive 0 = never."""
    key = _trail_key(template, name=name, alias=alias, owner=owner)
    bucket = _trail_bucket(template, name=name, retention_days=retention_days,
                           archive_after_days=archive_after_days,
                           access_log_expiration_days=access_log_expiration_days)
    trail = cloudtrail.Trail(
        "Trail",
        TrailName=name,
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
