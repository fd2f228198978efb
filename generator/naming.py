"""The one place for stack names, the few physical names AWS requires, and tags.

Physical names exist only where AWS requires one or where another part of the kit must know it
before the resource exists (App Runner metric dimensions, the Amplify token secret, the ECR
repository). Each is checked against its service's length and character rules at render time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from generator.config import AccountConfig, EnvironmentConfig

MANAGED_BY = "adagency-deploy-kit"
TAG_APPLICATION = "Application"
TAG_ENVIRONMENT = "Environment"
TAG_COMPONENT = "Component"
TAG_MANAGED_BY = "ManagedBy"
TAG_KEYS = (TAG_APPLICATION, TAG_ENVIRONMENT, TAG_COMPONENT, TAG_MANAGED_BY)
# Every Component tag value an environment's stacks may carry (cost tracking: one budget per deployed component).
COMPONENTS = ("security", "network", "frontend", "data", "secrets", "backend", "workers", "monitoring")
ACCOUNT_ENVIRONMENT = "account"  # Environment tag value on account-level stacks


class NamingError(ValueError):
    """A derived physical name breaks a service limit."""


@dataclass(frozen=True)
class Rule:
    service: str
    max_length: int
    pattern: str
    min_length: int = 1


RULES = {
    "cloudformation_stack": Rule("CloudFormation stack", 128, r"[A-Za-z][A-Za-z0-9-]*"),
    "ecs_cluster": Rule("ECS cluster", 255, r"[A-Za-z0-9_-]+"),
    "amplify_app": Rule("Amplify app", 255, r"[A-Za-z0-9_.-]+"),
    "backup_vault": Rule("AWS Backup vault", 50, r"[A-Za-z0-9_.-]+", 2),
    "backup_plan": Rule("AWS Backup plan", 50, r"[A-Za-z0-9_.-]+"),
    "rds_cluster": Rule("Aurora DB cluster", 63, r"[a-z](?:-?[a-z0-9])*"),
    "waf_web_acl": Rule("WAF web ACL", 128, r"[A-Za-z0-9_-]+"),
    "ecr_repository": Rule("ECR repository", 256, r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", 2),
    "secret": Rule("Secrets Manager secret", 512, r"[A-Za-z0-9/_+=.@-]+"),
    "budget": Rule("AWS Budgets budget", 100, r"[^:\\]+"),
    "dashboard": Rule("CloudWatch dashboard", 255, r"[A-Za-z0-9_-]+"),
    "codebuild_project": Rule("CodeBuild project", 150, r"[A-Za-z0-9][A-Za-z0-9_-]*", 2),
    "pipeline": Rule("CodePipeline pipeline", 100, r"[A-Za-z0-9.@_-]+"),
    "connection": Rule("CodeConnections connection", 32, r"[A-Za-z0-9_.-]+"),
    "log_group": Rule("CloudWatch Logs log group", 512, r"[A-Za-z0-9_./#-]+"),
    "kms_alias": Rule("KMS alias", 256, r"alias/(?!aws/)[A-Za-z0-9/_-]+", 7),
    "cloudtrail_trail": Rule("CloudTrail trail", 128, r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", 3),
    "anomaly_monitor": Rule("Cost Anomaly Detection monitor/subscription", 1024, r"[A-Za-z0-9 _.:/=+@-]+"),
}


def checked(kind: str, name: str) -> str:
    """Return `name` if it satisfies the service rule `kind`, else raise NamingError naming the limit."""
    rule = RULES[kind]
    if not rule.min_length <= len(name) <= rule.max_length:
        raise NamingError(f"{rule.service} name {name!r} is {len(name)} characters; "
                          f"allowed {rule.min_length}..{rule.max_length}. Shorten app_name or the environment name.")
    if not re.fullmatch(rule.pattern, name):
        raise NamingError(f"{rule.service} name {name!r} must match {rule.pattern}")
    return name


def _prefix(config: EnvironmentConfig) -> str:
    return f"{config.app_name}-{config.name}"


def _environment_name(kind: str, pattern: str) -> Callable[[EnvironmentConfig], str]:
    """A name function of one environment: EnvironmentConfig in, `pattern` out with {app} = app_name and
    {env} = the environment's name, checked against RULES[kind] (NamingError when it breaks the limit)."""
    def name(config: EnvironmentConfig) -> str:
        return checked(kind, pattern.format(app=config.app_name, env=config.name))
    name.__doc__ = (f"{RULES[kind].service} name `{pattern}` of an environment (EnvironmentConfig in); raises "
                    "NamingError when it breaks the service's limit.")
    return name


def _account_name(kind: str, pattern: str) -> Callable[[str], str]:
    """A name function of the account-level stacks: app_name in, `pattern` out with {app} = app_name,
    checked against RULES[kind] (NamingError when it breaks the limit)."""
    def name(app_name: str) -> str:
        return checked(kind, pattern.format(app=app_name))
    name.__doc__ = (f"{RULES[kind].service} name `{pattern}` (app_name in); raises NamingError when it breaks the "
                    "service's limit.")
    return name


# ---- stacks -------------------------------------------------------------------------------------
# One row a name: the service rule it is checked against and its pattern ({app} = app_name, {env} = the
# environment's name). Environment-level names take the EnvironmentConfig, account-level ones the app_name.

root_stack_name = _environment_name("cloudformation_stack", "{app}-{env}")
bootstrap_stack_name = _account_name("cloudformation_stack", "{app}-bootstrap")
pipeline_stack_name = _account_name("cloudformation_stack", "{app}-pipeline")


# ---- physical names of an environment that AWS requires or that other parts must know in advance -

# Known in advance: ECS and Container Insights metrics are dimensioned by ClusterName.
ecs_backend_cluster_name = _environment_name("ecs_cluster", "{app}-{env}-backend")
amplify_app_name = _environment_name("amplify_app", "{app}-{env}")
backup_vault_name = _environment_name("backup_vault", "{app}-{env}-vault")
backup_plan_name = _environment_name("backup_plan", "{app}-{env}-daily")
# Fixed so the RDS log-export group can be created first, with our key and retention, and so a change that
# would replace the cluster fails loudly instead of creating a new, empty database.
db_cluster_identifier = _environment_name("rds_cluster", "{app}-{env}")
web_acl_name = _environment_name("waf_web_acl", "{app}-{env}-backend")
budget_name = _environment_name("budget", "{app}-{env}-monthly")
dashboard_name = _environment_name("dashboard", "{app}-{env}")
anomaly_monitor_name = _environment_name("anomaly_monitor", "{app}-{env}-cost")
anomaly_subscription_name = _environment_name("anomaly_monitor", "{app}-{env}-cost-alerts")
# Known in advance: the trail's key and bucket policies name its ARN (aws:SourceArn) before it exists.
trail_name = _environment_name("cloudtrail_trail", "{app}-{env}-audit")
# WAF logs only go to log groups whose name starts with `aws-waf-logs-`.
waf_log_group_name = _environment_name("log_group", "aws-waf-logs-{app}-{env}-backend")


def component_budget_name(config: EnvironmentConfig, component: str) -> str:
    """One budget per Component tag value (per-component cost tracking; see docs/cost.md)."""
    return checked("budget", f"{_prefix(config)}-component-{component}")


def kms_alias(config: EnvironmentConfig, purpose: str) -> str:
    """Alias of an environment's KMS key, e.g. alias/adagency-dev-data (aliases are unique per region)."""
    return checked("kms_alias", f"alias/{_prefix(config)}-{purpose}")


# ---- account-level physical names (bootstrap and pipeline stacks) -------------------------------

# The account-level trail (bootstrap): its key and bucket policies name its ARN before it exists.
account_trail_name = _account_name("cloudtrail_trail", "{app}-account-audit")
account_trail_key_alias = _account_name("kms_alias", "alias/{app}-account-trail")
# Account-level (bootstrap) repository; environments pull `<repo>:<ImageTag>` from it.
ecr_repository_name = _account_name("ecr_repository", "{app}/backend")
# Alias of the account-level bootstrap key. Environment stacks never import bootstrap outputs, so the App
# Runner access role finds this key by alias (kms:ResourceAliases) to decrypt ECR image layers.
bootstrap_key_alias = _account_name("kms_alias", "alias/{app}-bootstrap")
# Account-level secret holding the Git provider token Amplify needs (read by dynamic reference
# `{{resolve:secretsmanager:<name>:SecretString:token}}`, JSON key GIT_TOKEN_JSON_KEY).
git_token_secret_name = _account_name("secret", "{app}/amplify/git-token")
GIT_TOKEN_JSON_KEY = "token"  # the secret's value is JSON: {"token": "<Git provider token>"}
pipeline_name = _account_name("pipeline", "{app}-delivery")
connection_name = _account_name("connection", "{app}-git")


def codebuild_project_name(app_name: str, purpose: str) -> str:
    return checked("codebuild_project", f"{app_name}-{purpose}")


def app_secret_logical_id(name: str) -> str:
    """Logical id of an application secret (backend.secrets) in the secrets stack: `stripe-key` ->
    `AppSecretStripeKey`. The default `gemini-api-key` keeps the id it always had, `GeminiApiKeySecret`, so
    environments deployed before secrets became configurable keep their secret."""
    camel = "".join(part.capitalize() for part in name.split("-"))
    return "GeminiApiKeySecret" if name == "gemini-api-key" else f"AppSecret{camel}"


def app_secret_output(name: str) -> str:
    """Stack output (secrets stack and root) and backend parameter holding the secret's ARN:
    `GeminiApiKeySecretArn` for the default, `AppSecret<Name>Arn` for the others."""
    return f"{app_secret_logical_id(name)}Arn"


# ---- tags ---------------------------------------------------------------------------------------

def tags(app_name: str, environment: str, component: str | None = None) -> dict[str, str]:
    """Stable tags only: never a commit SHA or a time (App Runner tags are create-only)."""
    result = {TAG_APPLICATION: app_name, TAG_ENVIRONMENT: environment, TAG_MANAGED_BY: MANAGED_BY}
    if component:
        result[TAG_COMPONENT] = component
    return dict(sorted(result.items()))


def environment_tags(config: EnvironmentConfig, component: str | None = None) -> dict[str, str]:
    return tags(config.app_name, config.name, component)


def account_tags(account: AccountConfig, component: str | None = None) -> dict[str, str]:
    return tags(account.app_name, ACCOUNT_ENVIRONMENT, component)


def validate_environment_names(config: EnvironmentConfig) -> None:
    """Derive every physical name once so a limit is hit at render time, never at deploy time."""
    for derive in (root_stack_name, amplify_app_name, backup_vault_name,
                   backup_plan_name, db_cluster_identifier,
                   web_acl_name, budget_name, dashboard_name, trail_name, waf_log_group_name):
        derive(config)


def bootstrap_export(app_name: str, output: str) -> str:
    """Export name of a bootstrap output, imported by the account-level pipeline stack only
    (environment stacks never import: they get values as parameters or by naming)."""
    return f"{bootstrap_stack_name(app_name)}-{output}"
