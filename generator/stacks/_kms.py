"""Customer-managed KMS keys whose policies name exactly who may use them.

Pattern: the account (root principal, i.e. IAM policies in this account) may ADMINISTER the key; it may
USE the key only through the AWS services listed per key (kms:ViaService); AWS services that act with
their own service principal (CloudWatch Logs, CloudTrail, alarm/budget publishers) get their own
statement with source or encryption-context conditions. No statement has a `*` action or principal.
In a key policy `Resource: "*"` means "this key" (the only value KMS accepts there).
"""

from __future__ import annotations

from collections.abc import Sequence

from awacs import kms as k
from awacs.aws import Allow, ArnLike, Bool, Condition, PolicyDocument, Principal, Statement, StringEquals
from troposphere import Ref, Sub, Template
from troposphere import kms as tkms

from generator.cfn import describe
from generator.components import retention_policies

PENDING_WINDOW_DAYS = 30

# Key administration, enumerated instead of kms:*. Deliberately absent: every cryptographic action
# (granted per service below) and DisableKeyRotation (rotation stays on; change the policy to turn it off).
ADMIN_ACTIONS = [
    k.CancelKeyDeletion, k.CreateAlias, k.DeleteAlias, k.DescribeKey, k.DisableKey, k.EnableKey,
    k.EnableKeyRotation, k.GetKeyPolicy, k.GetKeyRotationStatus, k.ListGrants, k.ListKeyPolicies,
    k.ListKeyRotations, k.ListResourceTags, k.PutKeyPolicy, k.RevokeGrant, k.RotateKeyOnDemand,
    k.ScheduleKeyDeletion, k.TagResource, k.UntagResource, k.UpdateAlias, k.UpdateKeyDescription,
]
# Symmetric encryption use (what integrated services call on the caller's behalf).
USAGE_ACTIONS = [k.Encrypt, k.Decrypt, k.ReEncryptFrom, k.ReEncryptTo, k.GenerateDataKey,
                 k.GenerateDataKeyWithoutPlaintext]


def account_root() -> Principal:
    """This account; the key policy delegates to IAM policies in it (never to other accounts)."""
    return Principal("AWS", Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root"))


def regional_endpoint(service: str) -> Sub:
    """kms:ViaService value of a regional service, e.g. rds.eu-west-1.amazonaws.com."""
    return Sub(f"{service}.${{AWS::Region}}.amazonaws.com")


def administration() -> Statement:
    return Statement(Sid="KeyAdministrationByThisAccount", Effect=Allow, Principal=account_root(),
                     Action=ADMIN_ACTIONS, Resource=["*"])


LOGS_ACTIONS = [*USAGE_ACTIONS, k.DescribeKey]


def cloudwatch_logs(sid: str, log_groups: str) -> Statement:
    """CloudWatch Logs (regional service principal) may use the key for the log groups of this account and
    region whose name matches `log_groups` (a pattern such as `*` or `/aws/apprunner/*`), checked through the
    kms:EncryptionContext:aws:logs:arn condition."""
    return Statement(
        Sid=sid,
        Effect=Allow,
        Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
        Action=LOGS_ACTIONS,
        Resource=["*"],
        Condition=Condition(ArnLike(
            "kms:EncryptionContext:aws:logs:arn",
            Sub(f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{log_groups}"))),
    )


def use_through(services: Sequence[str], grant_services: Sequence[str] = ()) -> list[Statement]:
    """IAM principals of this account may use the key only via `services`; the services among
    `grant_services` may also create grants for themselves (for encryption of the resources they run)."""
    via = {"kms:CallerAccount": Ref("AWS::AccountId"),
           "kms:ViaService": [regional_endpoint(s) for s in services]}
    statements = [Statement(Sid="UseOnlyThrough" + "".join(s.capitalize() for s in services), Effect=Allow,
                            Principal=account_root(), Action=USAGE_ACTIONS, Resource=["*"],
                            Condition=Condition(StringEquals(via)))]
    if grant_services:
        statements.append(Statement(
            Sid="GrantsOnlyForAwsResourcesOf" + "".join(s.capitalize() for s in grant_services),
            Effect=Allow, Principal=account_root(), Action=[k.CreateGrant], Resource=["*"],
            Condition=Condition([
                StringEquals({"kms:CallerAccount": Ref("AWS::AccountId"),
                              "kms:ViaService": [regional_endpoint(s) for s in grant_services]}),
                Bool("kms:GrantIsForAWSResource", "true"),
            ]),
        ))
    return statements


def customer_key(template: Template, logical_id: str, *, description: str, alias: str,
                 statements: Sequence[Statement]) -> tkms.Key:
    """Symmetric key with yearly rotation, a 30-day deletion window, Retain policies and an alias."""
    key = tkms.Key(
        logical_id,
        Description=description,
        Enabled=True,
        EnableKeyRotation=True,
        PendingWindowInDays=PENDING_WINDOW_DAYS,
        KeyPolicy=PolicyDocument(Version="2012-10-17", Statement=[administration(), *statements]),
    )
    retention_policies(key, retain=True)
    template.add_resource(describe(key, description))
    template.add_resource(describe(tkms.Alias(f"{logical_id}Alias", AliasName=alias, TargetKeyId=Ref(key)),
                                   f"Alias {alias}"))
    return key
