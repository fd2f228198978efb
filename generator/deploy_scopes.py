"""How far the pipeline's CloudFormation deployment role reaches, beyond the schema-derived action list.

`generator.deploy_permissions` derives *which* actions CloudFormation needs from the resource schemas. This
module decides the rest, kept apart so each can change alone:

- `SUPPLEMENTS`: actions CloudFormation calls that a type's schema handler list misses (each with its source).
- the environment permissions boundary: a managed policy (bootstrap stack) that every IAM role of the
  environment stacks carries; the deployment role may create or change roles only with it attached.
- `OPTIONAL_FEATURES`: actions a handler lists only for a feature no environment template uses (dropped).
- resource scopes: actions whose every resource type the kit can name before the resource exists (Lambda
  functions, log groups, buckets, topics, alarms, queues, ECS clusters and services, the web ACL, event rules,
  budgets, the backup vault, the DB cluster and its groups, secrets) are granted on the environments' names
  (`PREFIX_SCOPES`, `secret_name_patterns`, `log_group_name_patterns`) instead of "*".
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from awacs.aws import Action, Allow, Condition, Deny, PolicyDocument, Statement, StringEquals
from troposphere import Sub

from generator import deploy_permissions
from generator.stacks.backend_express import LOAD_BALANCER_ARN

# `Fn::Sub` heads of the ARNs this module and the pipeline write.
ARN = "arn:${AWS::Partition}"
REGIONAL = "${AWS::Region}:${AWS::AccountId}"
# What the kit's web ACL associations protect: App Runner's `ServiceArn`, the ECS Express service's load balancer.
WAF_ASSOCIATION_TARGETS = frozenset({"ServiceArn", LOAD_BALANCER_ARN})

# ---- (a) supplements ------------------------------------------------------------------------------
# resource type -> ((action, source), ...). Add an entry when a deploy fails with AccessDenied on an action the
# schema does not list (the CloudFormation event names the action); cite where the need is documented or seen.
SUPPLEMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::AppRunner::AutoScalingConfiguration": (
        ("apprunner:ListTagsForResource",
         "read after create lists the configuration's tags; missing from the schema's handler permissions "
         "(issue 10 of this repository, observed AccessDenied)"),
    ),
    "AWS::AppRunner::Service": (
        ("apprunner:ListTagsForResource",
         "same read path as the auto scaling configuration (tags are create-only and read back)"),
    ),
    "AWS::AppRunner::VpcConnector": (
        ("apprunner:ListTagsForResource",
         "same read path as the auto scaling configuration (tags are create-only and read back)"),
    ),
}


def supplement_actions(types: Iterable[str]) -> list[str]:
    """Sorted supplement actions for these resource types."""
    return sorted({action for t in types for action, _ in SUPPLEMENTS.get(t, ())})


# ---- (e) features the environments never use ---------------------------------------------------------
# A handler list names the calls of every feature of its type; some are made only when a template turns the
# feature on. Those actions are left out while no template does (each with what turns it on and the source).


@dataclass(frozen=True)
class OptionalFeature:
    """Actions that `types`' handlers call only for a feature, `used(resources)` (over the (type, properties)
    of every resource of the environment templates) says whether any template turns it on."""
    types: frozenset[str]
    actions: frozenset[str]
    used: Callable[[Sequence[tuple[str, Mapping]]], bool]
    source: str


def _any_with(resource_type: str, *properties: str) -> Callable[[Sequence[tuple[str, Mapping]]], bool]:
    return lambda resources: any(t == resource_type and set(properties) & set(p) for t, p in resources)


def _association_targets_other_than_app_runner_or_alb(resources: Sequence[tuple[str, Mapping]]) -> bool:
    """The kit associates its web ACL with an App Runner service (`ServiceArn`) or the load balancer of an ECS
    Express service (`ECSManagedResourceArns.IngressPath.LoadBalancerArn`); anything else counts as another
    target."""
    def attribute(properties: Mapping) -> str | None:
        arn = properties.get("ResourceArn")
        return arn["Fn::GetAtt"][1] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None

    return any(t == "AWS::WAFv2::WebACLAssociation" and attribute(p) not in WAF_ASSOCIATION_TARGETS
               for t, p in resources)


OPTIONAL_FEATURES: tuple[OptionalFeature, ...] = (
    OptionalFeature(
        frozenset({"AWS::WAFv2::WebACLAssociation"}),
        frozenset({"apigateway:SetWebACL", "appsync:AssociateWebACL", "appsync:DisassociateWebACL",
                   "appsync:GetWebACLForResource", "appsync:SetWebACL", "bedrock-agentcore:GatewayAssociateWebACL",
                   "bedrock-agentcore:GatewayDisassociateWebACL", "bedrock-agentcore:GatewayGetWebACLForResource",
                   "cognito-idp:AssociateWebACL", "cognito-idp:DisassociateWebACL", "cognito-idp:GetWebACLForResource",
                   "ec2:AssociateVerifiedAccessInstanceWebAcl", "ec2:DescribeVerifiedAccessInstanceWebAclAssociations",
                   "ec2:DisassociateVerifiedAccessInstanceWebAcl", "ec2:GetVerifiedAccessInstanceWebAcl"}),
        _association_targets_other_than_app_runner_or_alb,
        "AssociateWebACL needs the permissions of the protected resource's type only; the kit protects App "
        "Runner services and ALBs (https://docs.aws.amazon.com/waf/latest/APIReference/API_AssociateWebACL.html)"),
    OptionalFeature(
        frozenset({"AWS::S3::Bucket"}),
        frozenset({"s3tables:CreateNamespace", "s3tables:CreateTable", "s3tables:CreateTableBucket",
                   "s3tables:GetTable", "s3tables:GetTableMetadataLocation", "s3tables:PutTableBucketPolicy",
                   "s3tables:PutTableEncryption", "s3tables:PutTablePolicy", "s3tables:UpdateTableMetadataLocation"}),
        _any_with("AWS::S3::Bucket", "MetadataConfiguration", "MetadataTableConfiguration"),
        "S3 Metadata keeps its tables in an S3 table bucket, only for a bucket with a metadata configuration "
        "(https://docs.aws.amazon.com/AmazonS3/latest/userguide/metadata-tables-permissions.html)"),
    OptionalFeature(
        frozenset({"AWS::Lambda::Function"}),
        frozenset({"elasticfilesystem:DescribeMountTargets", "s3files:ListMountTargets"}),
        _any_with("AWS::Lambda::Function", "FileSystemConfigs"),
        "a function reads mount targets only when it mounts a file system "
        "(https://docs.aws.amazon.com/lambda/latest/dg/configuration-filesystem.html)"),
    OptionalFeature(
        frozenset({"AWS::Amplify::App", "AWS::Amplify::Branch"}),
        frozenset({"codecommit:GetRepository", "codecommit:GetRepositoryTriggers",
                   "codecommit:PutRepositoryTriggers"}),
        lambda resources: any(t == "AWS::Amplify::App" and "codecommit" in json.dumps(p.get("Repository", ""))
                              for t, p in resources),
        "CodeCommit calls read or set triggers of a CodeCommit repository, which the app names in `Repository`; "
        "the kit connects a GitHub repository (inferred from the calls, UNCONFIRMED in AWS documentation)"),
    OptionalFeature(
        frozenset({"AWS::EC2::VPCEndpoint"}),
        frozenset({"vpc-lattice:CreateServiceNetworkVpcEndpointAssociation", "vpce:AllowMultiRegion"}),
        _any_with("AWS::EC2::VPCEndpoint", "ServiceNetworkArn", "ResourceConfigurationArn", "ServiceRegion"),
        "only service-network and resource endpoints (ServiceNetworkArn, ResourceConfigurationArn) use VPC "
        "Lattice, only a cross-region endpoint (ServiceRegion) needs vpce:AllowMultiRegion; the kit's endpoints "
        "are gateway and interface endpoints in the stack's region (inferred from the schema, UNCONFIRMED)"),
)


def unused_feature_actions(templates: Iterable[Mapping]) -> set[str]:
    """Actions of OPTIONAL_FEATURES that no template uses and that no other resource type of the templates
    needs (an action another type lists stays)."""
    resources = [(r["Type"], r.get("Properties", {})) for t in templates for r in t.get("Resources", {}).values()]
    types = {t for t, _ in resources}
    unused = [f for f in OPTIONAL_FEATURES if f.types & types and not f.used(resources)]
    dropped = set().union(*(f.actions for f in unused))
    needed = set()
    for resource_type in types:
        own = set().union(*(f.actions for f in unused if resource_type in f.types))
        needed |= deploy_permissions.handler_permissions(resource_type) - own
    return dropped - needed


# ---- (c) the environment permissions boundary -----------------------------------------------------
# Services the environment roles may ever use (their policies' Allow actions must fall inside; a test checks).
# AWS Backup's role uses the AWS managed backup/restore policies, which for Aurora call backup, rds, kms, tag
# and ec2 (describe) actions:
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSBackupServiceRolePolicyForBackup.html
BOUNDARY_SERVICES = ("acm", "amplify", "application-autoscaling", "backup", "cloudwatch", "ec2", "ecr", "ecs",
                     "elasticloadbalancing", "kms", "logs", "rds", "s3", "secretsmanager", "sqs", "tag")
# AWS managed policies environment roles may attach (path after `policy/`) -> the services the kit uses them
# for; each must be inside BOUNDARY_SERVICES (a test checks). The boundary caps these broad policies to those
# services: AWS Backup of the Aurora cluster and its restore.
AWS_MANAGED_POLICY_SERVICES: dict[str, tuple[str, ...]] = {
    "service-role/AWSBackupServiceRolePolicyForBackup": ("backup", "ec2", "kms", "rds", "tag"),
    "service-role/AWSBackupServiceRolePolicyForRestores": ("backup", "ec2", "kms", "rds", "tag"),
    # ECS Express Mode's infrastructure role provisions the load balancer, certificate, security groups,
    # scaling and alarms of the service (backend.platform = "ecs-express"). Its one IAM action (v6) creates the
    # load balancing and ECS auto scaling service-linked roles: BOUNDARY_SERVICE_LINKED_ROLES.
    # https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonECSInfrastructureRoleforExpressGatewayServices.html
    "service-role/AmazonECSInfrastructureRoleforExpressGatewayServices": (
        "acm", "application-autoscaling", "cloudwatch", "ec2", "ecs", "elasticloadbalancing", "logs"),
}

# IAM actions on roles that accept the iam:PermissionsBoundary condition key (IAM service authorization
# reference: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html).
BOUNDARY_CONDITIONED = frozenset({
    "iam:AttachRolePolicy", "iam:CreateRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy",
})
# Never granted to the deployment role, whatever a schema lists: removing the boundary is the escape hatch.
NEVER_GRANTED = frozenset({"iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"})

# IAM writes the boundary denies outright (escalation: new principals, new policies, new credentials).
ESCALATION_ACTIONS = (
    "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:CreateAccessKey", "iam:CreatePolicy",
    "iam:CreatePolicyVersion", "iam:CreateRole", "iam:CreateUser", "iam:PassRole", "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy", "iam:PutUserPermissionsBoundary", "iam:PutUserPolicy", "iam:SetDefaultPolicyVersion",
    "iam:UpdateAssumeRolePolicy",
)
BOUNDARY_SELF_PROTECTION = ("iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
                            "iam:SetDefaultPolicyVersion")


def boundary_name(app_name: str) -> str:
    """`<app>-permissions-boundary`: no environment prefix `<app>-<env>-` can match it (env names are 2..10
    characters, and `permissions` is 11), so the deployment role's IAM scope never covers it."""
    return f"{app_name}-permissions-boundary"


def boundary_arn(app_name: str) -> Sub:
    return Sub(f"{ARN}:iam::${{AWS::AccountId}}:policy/{boundary_name(app_name)}")


def _actions(names: Iterable[str]) -> list[Action]:
    return [Action(*name.split(":", 1)) for name in sorted(names)]


# Service-linked roles an environment role may create: ECS Express Mode's infrastructure role creates the load
# balancing and ECS auto scaling ones when the account has none yet (its AWS managed policy grants exactly these,
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonECSInfrastructureRoleforExpressGatewayServices.html).
# A service-linked role's permissions are AWS's and only that service assumes it, so this is no escalation.
BOUNDARY_SERVICE_LINKED_ROLES = ("ecs.application-autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com")


def boundary_document(app_name: str) -> PolicyDocument:
    """Ceiling for every environment role: the listed services only; no IAM but the creation of the service-linked
    roles in BOUNDARY_SERVICE_LINKED_ROLES (explicitly denied: new roles/users/policies, PassRole); the boundary can
    neither be changed nor removed."""
    return PolicyDocument(Version="2012-10-17", Statement=[
        Statement(Sid="EnvironmentServicesOnly", Effect=Allow,
                  Action=[Action(service, "*") for service in BOUNDARY_SERVICES], Resource=["*"]),
        Statement(Sid="ServiceLinkedRolesOfManagedInfrastructure", Effect=Allow,
                  Action=[Action("iam", "CreateServiceLinkedRole")],
                  Resource=[Sub(f"{ARN}:iam::${{AWS::AccountId}}:role/aws-service-role/*")],
                  Condition=Condition(StringEquals("iam:AWSServiceName", list(BOUNDARY_SERVICE_LINKED_ROLES)))),
        Statement(Sid="DenyPrivilegeEscalation", Effect=Deny, Action=_actions(ESCALATION_ACTIONS), Resource=["*"]),
        Statement(Sid="DenyRemovingBoundaries", Effect=Deny, Action=_actions(NEVER_GRANTED), Resource=["*"]),
        Statement(Sid="DenyChangingThisBoundary", Effect=Deny, Action=_actions(BOUNDARY_SELF_PROTECTION),
                  Resource=[boundary_arn(app_name)]),
    ])


def boundary_condition_actions(iam_actions: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split IAM role actions into (conditioned on the boundary, unconditioned); NEVER_GRANTED are dropped."""
    kept = [a for a in sorted(set(iam_actions)) if a not in NEVER_GRANTED]
    return [a for a in kept if a in BOUNDARY_CONDITIONED], [a for a in kept if a not in BOUNDARY_CONDITIONED]


# ---- (b) and (d) resource scopes ------------------------------------------------------------------
SCOPE_FUNCTIONS = "lambda-functions"
SCOPE_LOG_GROUPS = "log-groups"
SCOPE_BUCKETS = "buckets"
SCOPE_SECRET_VALUES = "secret-values"
SCOPE_SECRETS = "secrets"
SCOPE_TOPICS = "topics"
SCOPE_ALARMS_AND_DASHBOARDS = "alarms-and-dashboards"
SCOPE_QUEUES = "queues"
SCOPE_ECS = "ecs-clusters-and-services"
SCOPE_WEB_ACLS = "web-acls"
SCOPE_EVENT_RULES = "event-rules"
SCOPE_BUDGETS = "budgets"
SCOPE_BACKUP_VAULTS = "backup-vaults"
SCOPE_DATABASE = "database-cluster"

# service -> (the resource types whose ARNs the kit can name, scope). An action is scoped only when every
# resource type it accepts is in the set, so no call of it can need a resource the scope does not cover.
# Names are the kit's own (`<app>-<env>...`: the ECS backend cluster, web ACL, budgets, backup vault, DB cluster,
# dashboards) or generated by CloudFormation from the nested stack name, which starts with `<app>-<env>-`
# (functions, unnamed log groups, buckets, topics, alarms, queues, the workers' cluster, event rules, the DB
# subnet and parameter groups). Secrets have generated names that do not carry the stack name (see
# `secret_name_patterns`).
SCOPED_RESOURCE_TYPES = {
    "lambda": (frozenset({"function"}), SCOPE_FUNCTIONS),
    "logs": (frozenset({"log-group"}), SCOPE_LOG_GROUPS),
    "s3": (frozenset({"bucket"}), SCOPE_BUCKETS),
    "sns": (frozenset({"topic"}), SCOPE_TOPICS),
    "cloudwatch": (frozenset({"alarm", "dashboard"}), SCOPE_ALARMS_AND_DASHBOARDS),
    "sqs": (frozenset({"queue"}), SCOPE_QUEUES),
    "ecs": (frozenset({"cluster", "service", "service-deployment", "service-revision"}), SCOPE_ECS),
    "wafv2": (frozenset({"webacl"}), SCOPE_WEB_ACLS),
    # The kit's rules are on the default bus; a custom-bus rule ARN (rule/<bus>/<name>) is never called.
    "events": (frozenset({"rule-on-default-event-bus", "rule-on-custom-event-bus"}), SCOPE_EVENT_RULES),
    "budgets": (frozenset({"budget", "budgetAction"}), SCOPE_BUDGETS),
    "backup": (frozenset({"backupVault"}), SCOPE_BACKUP_VAULTS),
    # Not "db": the instances' generated identifiers are cut to 63 characters, and how CloudFormation cuts
    # them is not documented; instance actions stay on "*".
    "rds": (frozenset({"cluster", "subgrp", "cluster-pg"}), SCOPE_DATABASE),
    "secretsmanager": (frozenset({"secret"}), SCOPE_SECRETS),
}

# scope -> (statement Sid, ARN patterns; `{prefix}` is each environment's `<app>-<env>`). Formats from the
# Service Authorization Reference of each service
# (https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html).
PREFIX_SCOPES: dict[str, tuple[str, tuple[str, ...]]] = {
    SCOPE_FUNCTIONS: ("FunctionsOfTheEnvironments", (f"{ARN}:lambda:{REGIONAL}:function:{{prefix}}-*",)),
    # Bucket names are generated from the (lower-case) stack names.
    SCOPE_BUCKETS: ("BucketsOfTheEnvironments", (f"{ARN}:s3:::{{prefix}}-*",)),
    SCOPE_TOPICS: ("TopicsOfTheEnvironments", (f"{ARN}:sns:{REGIONAL}:{{prefix}}-*",)),
    SCOPE_ALARMS_AND_DASHBOARDS: ("AlarmsAndDashboardsOfTheEnvironments", (
        f"{ARN}:cloudwatch:{REGIONAL}:alarm:{{prefix}}-*",
        f"{ARN}:cloudwatch::${{AWS::AccountId}}:dashboard/{{prefix}}",
        f"{ARN}:cloudwatch::${{AWS::AccountId}}:dashboard/{{prefix}}-*")),
    SCOPE_QUEUES: ("QueuesOfTheEnvironments", (f"{ARN}:sqs:{REGIONAL}:{{prefix}}-*",)),
    # Services, deployments and revisions live under their cluster (long ARN format: service/<cluster>/<name>,
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-account-settings.html#ecs-resource-ids).
    SCOPE_ECS: ("EcsClustersAndServicesOfTheEnvironments", tuple(
        f"{ARN}:ecs:{REGIONAL}:{kind}/{{prefix}}-*"
        for kind in ("cluster", "service", "service-deployment", "service-revision"))),
    SCOPE_WEB_ACLS: ("WebAclsOfTheEnvironments", (f"{ARN}:wafv2:{REGIONAL}:regional/webacl/{{prefix}}-*/*",)),
    SCOPE_EVENT_RULES: ("EventRulesOfTheEnvironments", (f"{ARN}:events:{REGIONAL}:rule/{{prefix}}-*",)),
    SCOPE_BUDGETS: ("BudgetsOfTheEnvironments", (f"{ARN}:budgets::${{AWS::AccountId}}:budget/{{prefix}}-*",)),
    SCOPE_BACKUP_VAULTS: ("BackupVaultsOfTheEnvironments",
                          (f"{ARN}:backup:{REGIONAL}:backup-vault:{{prefix}}-*",)),
    # The cluster is named `<app>-<env>`; RDS stores the generated subnet and parameter group names in lower
    # case, and `<app>-<env>` is lower case (config). `default.*` parameter groups: RDS may read the family's
    # default group when it compares parameters.
    SCOPE_DATABASE: ("DatabaseClusterOfTheEnvironments", (
        f"{ARN}:rds:{REGIONAL}:cluster:{{prefix}}",
        f"{ARN}:rds:{REGIONAL}:subgrp:{{prefix}}-*",
        f"{ARN}:rds:{REGIONAL}:cluster-pg:{{prefix}}-*",
        f"{ARN}:rds:{REGIONAL}:cluster-pg:default.*")),
}


# Creates whose resource the service names during the call (the request carries no name), so the ARN IAM
# evaluates is not known in advance: they stay on "*" whatever their resource type. ECS generates the Express
# service's name (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateExpressGatewayService.html).
NAMED_DURING_THE_CALL = frozenset({"ecs:CreateExpressGatewayService"})


@functools.cache
def _resource_types() -> Mapping[str, Mapping[str, tuple[str, ...]]]:
    """Resource types of every IAM action (lower-case), from cfn-lint's copy of the IAM service reference."""
    data = json.loads((deploy_permissions._schemas_dir().parent / "AdditionalSpecs" / "Policies.json").read_text())
    return {service: {name: tuple(spec.get("Resources", ())) for name, spec in body.get("Actions", {}).items()}
            for service, body in data.items()}


def scope_of(action: str) -> str | None:
    """The narrower scope of an action that deploy_permissions grants on "*", or None to keep "*". An action is
    scoped only when every resource type it accepts is one the kit can name (so no call needs another);
    resource type names compare case-insensitively (the reference writes `Secret`, `backupVault`)."""
    if action == "secretsmanager:GetSecretValue":
        return SCOPE_SECRET_VALUES
    if action in NAMED_DURING_THE_CALL:
        return None
    service, name = action.split(":", 1)
    if service not in SCOPED_RESOURCE_TYPES:
        return None
    known, scope = SCOPED_RESOURCE_TYPES[service]
    types = {t.lower() for t in _resource_types().get(service, {}).get(name.lower(), ())}
    return scope if types and types <= {k.lower() for k in known} else None


def split_scoped(actions: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """(scope -> sorted actions, sorted actions that stay on "*")."""
    scoped: dict[str, list[str]] = {}
    rest = []
    for action in sorted(set(actions)):
        scope = scope_of(action)
        if scope is None:
            rest.append(action)
        else:
            scoped.setdefault(scope, []).append(action)
    return scoped, rest


def secret_name_patterns(templates: Iterable[Mapping]) -> list[str] | None:
    """IAM name patterns (the part after `secret:`) of every secret the templates create: a literal `Name` as
    `<name>-??????` (Secrets Manager appends six random characters), an unnamed secret as `<LogicalId>-*`
    (CloudFormation names it `<LogicalId>-<12 random characters>`:
    https://docs.aws.amazon.com/secretsmanager/latest/userguide/cfn-example_secret.html), and the master
    secret RDS creates with the caller's permissions for `ManageMasterUserPassword` as `rds!cluster-*`
    (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/rds-secrets-manager.html). None when a
    name is built another way: the caller then keeps secret actions on "*"."""
    found: set[str] = set()
    for template in templates:
        for logical_id, resource in template.get("Resources", {}).items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::RDS::DBCluster" and properties.get("ManageMasterUserPassword") is True:
                found.add("rds!cluster-*")
            if resource["Type"] != "AWS::SecretsManager::Secret":
                continue
            name = properties.get("Name")
            if name is None:
                found.add(f"{logical_id}-*")
            elif isinstance(name, str):
                found.add(f"{name}-??????")
            else:
                return None
    return sorted(found)


def log_group_name_patterns(templates: Iterable[Mapping]) -> list[str] | None:
    """IAM name patterns of the log groups the templates name themselves: literal names as they are, `Fn::Sub`
    names with every `${...}` as `*` (e.g. Amplify's `/aws/amplify/${App.AppId}`). None when a name is built
    another way: the caller then keeps log-group actions on "*" rather than risk a failed deploy."""
    found: set[str] = set()
    for template in templates:
        for resource in template.get("Resources", {}).values():
            if resource["Type"] != "AWS::Logs::LogGroup" or "LogGroupName" not in resource.get("Properties", {}):
                continue
            name = resource["Properties"]["LogGroupName"]
            if isinstance(name, dict) and isinstance(name.get("Fn::Sub"), str):
                name = re.sub(r"\$\{[^}]*\}", "*", name["Fn::Sub"])
            if not isinstance(name, str):
                return None
            found.add(name)
    return sorted(found)
