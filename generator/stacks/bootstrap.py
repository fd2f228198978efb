"""Account-level bootstrap stack: what must exist before the first environment deploy.

- a KMS key (rotation on, Retain) with alias `alias/<app>-bootstrap`,
- the artifact bucket for packaged nested templates and pipeline artifacts (+ its access-log bucket),
- the ECR repository of the backend image (immutable tags, scan on push, KMS, keeps the newest N images),
- the Git-provider token secret Amplify reads by dynamic reference, created with a random placeholder,
- the account-level CloudTrail trail with its own key and bucket (`cloudtrail`, default on): one trail records
  every environment of the account; environments add their own only when they opt in.

Its outputs are exported (`naming.bootstrap_export`) for the account-level pipeline stack only; environment
stacks never import them (they derive the repository name and key alias from `generator.naming`).
"""

from __future__ import annotations

import json

from awacs import kms as awacs_kms
from awacs.aws import Allow, Condition, Statement, StringEquals
from troposphere import GetAtt, Ref, Template, ecr, iam, s3, secretsmanager

from generator import deploy_scopes, naming
from generator.cfn import add_output, describe, new_template, skip_checkov
from generator.components import access_log_bucket, retention_policies, secure_bucket
from generator.config import AccountConfig, EnvironmentConfig
from generator.stacks._kms import account_root, cloudwatch_logs, customer_key, regional_endpoint
from generator.stacks._trail import TRAIL_BUCKET, add_trail

DESCRIPTION = "account-level bootstrap: artifact bucket, ECR repository, Git token secret and their KMS key"

# The token lives under this JSON key; the frontend stack resolves
# {{resolve:secretsmanager:<app>/amplify/git-token:SecretString:token}}.
GIT_TOKEN_JSON_KEY = naming.GIT_TOKEN_JSON_KEY

# Services through which IAM principals of this account may use the key (their IAM policies must still
# grant it). A principal that needs the key directly (not through one of these) is refused by design.
# CodeBuild and CodePipeline normally reach the key through S3; listed too so a build that encrypts its
# artifacts or reports directly is not refused on its first real run (not verifiable offline).
VIA_SERVICES = ("codebuild", "codepipeline", "ecr", "s3", "secretsmanager", "sns")

USE_ACTIONS = (
    awacs_kms.Decrypt, awacs_kms.DescribeKey, awacs_kms.Encrypt, awacs_kms.GenerateDataKey,
    awacs_kms.GenerateDataKeyWithoutPlaintext, awacs_kms.ReEncryptFrom, awacs_kms.ReEncryptTo,
)
GRANT_ACTIONS = (awacs_kms.CreateGrant, awacs_kms.RetireGrant)  # ECR grants itself use of the key per repository


def key_statements() -> list[Statement]:
    """The bootstrap key's statements after the administration one (`_kms.customer_key` adds that): account IAM
    may use the key only through VIA_SERVICES (and create/retire grants there, for ECR); CloudWatch Logs
    (CodeBuild log groups of the pipeline) may use it for log groups of this account and region."""
    return [
        Statement(
            Sid="AccountUsesKeyThroughServices",
            Effect=Allow,
            Principal=account_root(),
            Action=list(USE_ACTIONS + GRANT_ACTIONS),
            Resource=["*"],  # in a key policy "*" means this key
            Condition=Condition(StringEquals({
                "kms:CallerAccount": Ref("AWS::AccountId"),
                "kms:ViaService": [regional_endpoint(service) for service in VIA_SERVICES],
            })),
        ),
        cloudwatch_logs("CloudWatchLogsEncryptsLogGroups", "*"),
    ]


def ecr_lifecycle_policy(keep: int) -> str:
    """ECR lifecycle policy text (deterministic JSON): expire everything beyond the newest `keep` images."""
    return json.dumps({"rules": [{
        "rulePriority": 1,
        "description": f"Keep the newest {keep} images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
        "action": {"type": "expire"},
    }]}, sort_keys=True, separators=(",", ":"))


def build(account: AccountConfig, environments: list[EnvironmentConfig]) -> Template:
    """Account-level bootstrap stack: KMS key, artifact bucket, ECR repository, Git token secret, permissions
    boundary and the account CloudTrail trail, deployed once before the pipeline.

    `environments` is accepted for symmetry with the pipeline stack; nothing here is per environment.
    Parameters: none. Outputs: ArtifactBucketName, ArtifactKeyArn, EcrRepositoryName, EcrRepositoryUri,
    GitTokenSecretArn, PermissionsBoundaryArn, and AuditTrailBucketName when `cloudtrail` is on; each exported
    as `naming.bootstrap_export` (the pipeline stack imports them). Raises:
    naming.NamingError when a generated AWS name breaks its service's limit.
    """
    del environments
    app = account.app_name
    template = new_template(f"{app}: {DESCRIPTION} (rendered by adagency-deploy-kit; do not edit by hand)")

    # The administration statement, rotation, deletion window, retention and the alias (environments find the
    # key by it) come from _kms.customer_key, as for the environments' keys.
    key = customer_key(template, "BootstrapKey", alias=naming.bootstrap_key_alias(app),
                       description=f"{app} bootstrap: artifacts, ECR images, Git token secret, pipeline logs",
                       statements=key_statements())
    key_arn = GetAtt(key, "Arn")

    logs = access_log_bucket(template, "AccessLogBucket", description="S3 access logs of the artifact bucket",
                             expiration_days=account.access_log_expiration_days, retain=True)
    artifacts = secure_bucket(
        template, "ArtifactBucket",
        description="Artifact bucket: packaged nested templates and pipeline artifacts",
        kms_key_arn=key_arn, retain=True,
        lifecycle_rules=[s3.LifecycleRule(
            Id="ExpireArtifacts", Status="Enabled",
            ExpirationInDays=account.artifact_expiration_days,
            NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(
                NoncurrentDays=account.artifact_expiration_days),
            AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=1),
        )],
        access_log_bucket=Ref(logs), access_log_prefix="artifact-bucket/",
    )

    repository = template.add_resource(retention_policies(describe(ecr.Repository(
        "BackendRepository",
        RepositoryName=naming.ecr_repository_name(app),
        ImageTagMutability="IMMUTABLE",
        ImageScanningConfiguration=ecr.ImageScanningConfiguration(ScanOnPush=True),
        EncryptionConfiguration=ecr.EncryptionConfiguration(EncryptionType="KMS", KmsKey=key_arn),
        LifecyclePolicy=ecr.LifecyclePolicy(LifecyclePolicyText=ecr_lifecycle_policy(account.ecr_keep_images)),
    ), "ECR repository of the backend image (tag = commit SHA)"), retain=True))

    token = template.add_resource(retention_policies(describe(secretsmanager.Secret(
        "GitTokenSecret",
        Name=naming.git_token_secret_name(app),
        Description=(f"Git provider token Amplify uses to read the frontend repository; JSON key "
                     f"'{GIT_TOKEN_JSON_KEY}'. Created with a random placeholder: set it with "
                     "`adkit secrets set <any env of this account> git-token`."),
        KmsKeyId=key_arn,
        # No value in the template: Secrets Manager generates a random placeholder under the JSON key.
        GenerateSecretString=secretsmanager.GenerateSecretString(
            SecretStringTemplate="{}", GenerateStringKey=GIT_TOKEN_JSON_KEY,
            PasswordLength=40, ExcludePunctuation=True),
    ), "Git provider token for Amplify (placeholder until the operator sets it)"), retain=True))

    boundary = template.add_resource(describe(iam.ManagedPolicy(
        "PermissionsBoundary",
        # No Description: it is create-only, and with a fixed name a changed description could never replace it.
        ManagedPolicyName=deploy_scopes.boundary_name(app),
        PolicyDocument=deploy_scopes.boundary_document(app),
    ), "Permissions boundary of every environment role (the deployment role may create roles only with it)"))
    reason = ("A permissions boundary grants nothing: it is the ceiling of the environment roles, whose own "
              "policies stay least-privilege. Its Allow names whole services on purpose; IAM is denied.")
    for check in ("CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_111"):
        skip_checkov(boundary, check, reason)

    if account.cloudtrail:
        add_trail(template, name=naming.account_trail_name(app), alias=naming.account_trail_key_alias(app),
                  owner=f"{app} account", retention_days=account.trail_log_retention_days,
                  archive_after_days=account.trail_log_archive_after_days,
                  access_log_expiration_days=account.access_log_expiration_days)
        add_output(template, "AuditTrailBucketName", Ref(TRAIL_BUCKET),
                   "S3 bucket holding the account's CloudTrail logs",
                   export=naming.bootstrap_export(app, "AuditTrailBucketName"))

    outputs = {
        "PermissionsBoundaryArn": (Ref(boundary), "Permissions boundary of every environment role"),
        "ArtifactBucketName": (Ref(artifacts), "Bucket for packaged nested templates and pipeline artifacts"),
        "ArtifactKeyArn": (key_arn, "KMS key of the bootstrap resources"),
        "EcrRepositoryName": (Ref(repository), "ECR repository of the backend image"),
        "EcrRepositoryUri": (GetAtt(repository, "RepositoryUri"), "URI to tag and push backend images to"),
        "GitTokenSecretArn": (Ref(token), "Secret holding the Git provider token (JSON key 'token')"),
    }
    for name, (value, text) in outputs.items():
        add_output(template, name, value, text, export=naming.bootstrap_export(app, name))
    return template
