"""Typed, validated configuration: one TOML file per environment plus one account-level file.

Everything structural is decided here, at render time. A mistake is refused before anything is
rendered, with a message that names the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from generator import contract

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "config"
ENVIRONMENTS_DIR = CONFIG_DIR / "environments"
ACCOUNT_FILE = CONFIG_DIR / "account.toml"

# CloudWatch Logs accepts only these retention values (AWS::Logs::LogGroup RetentionInDays enum).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
MIN_LOG_RETENTION_DAYS = 30  # the kit's own floor: operators need a month of logs after an incident

# App Runner's valid vCPU -> memory combinations; cfn-lint does not check pairs.
# https://docs.aws.amazon.com/apprunner/latest/api/API_InstanceConfiguration.html
APP_RUNNER_SIZES: dict[str, tuple[str, ...]] = {
    "0.25 vCPU": ("0.5 GB", "1 GB"),
    "0.5 vCPU": ("1 GB",),
    "1 vCPU": ("2 GB", "3 GB", "4 GB"),
    "2 vCPU": ("4 GB", "6 GB"),
    "4 vCPU": ("8 GB", "10 GB", "12 GB"),
}

# Aurora PostgreSQL majors with 0-ACU auto-pause and the first minor that supports it
# (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-serverless-v2-auto-pause.html).
AURORA_PG_AUTO_PAUSE_MIN_MINOR = {16: 3, 17: 4, 18: 3}

# `<app>-<name>` must never collide with the account-level stack names.
RESERVED_ENVIRONMENT_NAMES = ("account", "bootstrap", "pipeline")

# RFC 2606 example domains: they render, but the deploy command refuses them.
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")

# Application variables ([backend.environment], [frontend.environment]): upper snake case, like the contract's.
VARIABLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
# Names AWS keeps for itself: the AWS_ prefix (SDK and runtime settings), App Runner's PORT (set from the service
# port) and its AWSAPPRUNNER prefix. https://docs.aws.amazon.com/apprunner/latest/dg/env-variable.html
RESERVED_VARIABLE_PREFIXES = ("AWS_", "AWSAPPRUNNER")
# Backend names the kit owns: the app contract (generator/contract.py) and App Runner's PORT.
BACKEND_KIT_VARIABLES = tuple(dict.fromkeys((*contract.PLAIN_VARIABLES, *contract.RUNS_API_VARIABLES,
                                             *contract.WORKER_VARIABLES, contract.PORT)))
# Frontend names the kit owns: the backend URL and environment name of the Amplify branch, the app's Node version.
FRONTEND_KIT_VARIABLES = ("NEXT_PUBLIC_API_BASE_URL", "APP_ENVIRONMENT", "NODE_VERSION")
# Application secrets (backend.secrets): kebab-case names; `git-token` is the account-level Git provider token.
# A plain variable whose name looks like a secret is refused: secrets go to backend.secrets (Secrets Manager, by
# ARN), never into a template, a build or a plain environment variable. `*_ARN` names point to one and are fine.
SECRET_LOOKING_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE", re.IGNORECASE)
SECRET_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
RESERVED_SECRET_NAMES = ("git-token",)
DEFAULT_SECRETS = ("gemini-api-key",)
MAX_SECRET_NAME_LENGTH = 48


def secret_variable(name: str) -> str:
    """Variable a secret is injected as: `gemini-api-key` -> `GEMINI_API_KEY`."""
    return name.upper().replace("-", "_")


def _variable_problem(name: str, kit_names: tuple[str, ...]) -> str | None:
    """Why `name` cannot be an application variable, or None."""
    if not VARIABLE_NAME.fullmatch(name):
        return f"{name!r} is not a variable name: upper snake case, [A-Z][A-Z0-9_]*, at most 128 characters"
    if name in kit_names:
        return f"{name!r} is set by the kit (reserved: {', '.join(sorted(kit_names))})"
    if name.startswith(RESERVED_VARIABLE_PREFIXES):
        return f"{name!r} uses a prefix AWS reserves ({', '.join(RESERVED_VARIABLE_PREFIXES)})"
    return None


def _plain_problem(name: str, kit_names: tuple[str, ...]) -> str | None:
    """Why `name` cannot be a plain (non-secret) application variable, or None."""
    problem = _variable_problem(name, kit_names)
    if problem is None and SECRET_LOOKING_NAME.search(name) and not name.endswith("_ARN"):
        problem = (f"{name!r} looks like a secret ({SECRET_LOOKING_NAME.pattern}): plain variables are visible in "
                   "the template and the console; declare it in backend.secrets instead")
    return problem


def _check_variables(value: dict[str, str], kit_names: tuple[str, ...]) -> dict[str, str]:
    for name, text in value.items():
        problem = _plain_problem(name, kit_names)
        if problem:
            raise ValueError(problem)
        if len(text) > 4096:
            raise ValueError(f"{name}: value longer than 4096 characters")
        if any(ord(c) < 32 and c not in "\t" for c in text):
            raise ValueError(f"{name}: value holds a control character")
    return dict(sorted(value.items()))


def _variables_validator(kit_names: tuple[str, ...]) -> Any:
    """The field validator of a model's `environment` table (plain application variables, checked by
    _check_variables against `kit_names`); assign it in the class body."""
    def check(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_variables(value, kit_names)
    return field_validator("environment")(classmethod(check))


# The only ranges RFC 1918 sets aside for private networks (ipaddress' is_private also admits link-local,
# CGNAT, documentation and loopback ranges, which a VPC must not use).
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))

# RDS refuses a DatabaseName that is a word reserved by the engine, and the cluster already holds `postgres`,
# `template0`, `template1` and (Aurora) `rdsadmin`. Sources: DatabaseName in
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBCluster.html and the "reserved" key words
# of https://www.postgresql.org/docs/current/sql-keywords-appendix.html
RESERVED_DATABASE_NAMES = frozenset({
    "postgres", "template0", "template1", "rdsadmin",
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization", "binary",
    "both", "case", "cast", "check", "collate", "collation", "column", "concurrently", "constraint", "create",
    "cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time",
    "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end",
    "except", "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "ilike",
    "in", "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral", "leading", "left", "like",
    "limit", "localtime", "localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only", "or",
    "order", "outer", "overlaps", "placing", "primary", "references", "returning", "right", "select",
    "session_user", "similar", "some", "symmetric", "system_user", "table", "tablesample", "then", "to",
    "trailing", "true", "union", "unique", "user", "using", "variadic", "verbose", "when", "where", "window",
    "with",
})

# A budget below this is no budget: AWS Budgets bills in cents, and any environment costs more than 1 USD a month.
MIN_BUDGET_USD = 1.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
# An owner or repository name: letters, digits, '_', '.', '-', not '.' or '..' alone (no path tricks).
_REPO_PART = r"(?!\.{1,2}(/|$))[A-Za-z0-9_.-]{1,100}"


def _matching(regex: str, allowed: str):
    """A validator: the whole string matches `regex`, else an error that says in words what is `allowed`."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value
    return AfterValidator(check)


def _email(value: str) -> str:
    """local@domain: no control characters or spaces, one @, a domain of dot-separated DNS labels."""
    allowed = "an e-mail address like oncall@your-company.com (local@domain, no spaces or control characters)"
    if _CONTROL.search(value) or len(value) > 254 or value.count("@") != 1:
        raise ValueError(f"must be {allowed}")
    local, domain = value.split("@")
    labels = domain.split(".")
    if (not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}", local) or local.startswith(".")
            or local.endswith(".") or ".." in local or len(labels) < 2
            or not all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels)
            or not re.fullmatch(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}", labels[-1])):
        raise ValueError(f"must be {allowed}")
    return value


def git_branch_problem(value: str) -> str | None:
    """Why `value` is not a valid git branch name (the rules of `git check-ref-format --branch`), or None.
    https://git-scm.com/docs/git-check-ref-format"""
    if not value:
        return "must not be empty"
    if len(value) > 255:
        return "must be at most 255 characters"
    if _CONTROL.search(value) or re.search(r"[ ~^:?*\[\\]", value):
        return "must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    if "//" in value or value.startswith("/") or value.endswith("/"):
        return "must not start or end with '/' or contain '//'"
    if ".." in value or "@{" in value or value == "@":
        return "must not contain '..' or '@{' and must not be '@'"
    if value.endswith(".") or value.endswith(".lock") or value.startswith("-"):
        return "must not start with '-' or end with '.' or '.lock'"
    if any(part.startswith(".") or part.endswith(".lock") for part in value.split("/")):
        return "no '/'-separated part may start with '.' or end with '.lock'"
    return None


def _git_branch(value: str) -> str:
    problem = git_branch_problem(value)
    if problem:
        raise ValueError(f"{problem} (git branch name rules, `git check-ref-format --branch`)")
    return value


def _unique(what: str):
    def check(values: list) -> list:
        seen = set()
        duplicates = sorted({v for v in values if v in seen or seen.add(v)})
        if duplicates:
            raise ValueError(f"each {what} may appear once (duplicated: {', '.join(map(repr, duplicates))})")
        return values
    return AfterValidator(check)


Name = Annotated[str, _matching(r"[a-z][a-z0-9-]{1,18}[a-z0-9]",
                                "3-20 characters: lower-case letters, digits and '-', starting with a letter, "
                                "not ending with '-'")]
AccountId = Annotated[str, _matching(r"[0-9]{12}", "a 12-digit AWS account id like 123456789012")]
Region = Annotated[str, _matching(r"[a-z]{2}(-gov)?-[a-z]+-[0-9]", "an AWS region code like eu-west-1")]
Email = Annotated[str, AfterValidator(_email)]
DnsLabel = Annotated[str, _matching(f"({_DNS_LABEL})?",
                                    "a DNS label: lower-case letters, digits and '-', at most 63 characters, not "
                                    "starting or ending with '-' (\"\" for the apex)")]
GitBranch = Annotated[str, AfterValidator(_git_branch)]
EnvironmentName = Annotated[str, _matching(r"[a-z][a-z0-9]{1,9}", "2-10 lower-case letters and digits, starting "
                                           "with a letter (e.g. dev, prod, staging)")]


def _not_below(field: str, lower: str) -> Any:
    """The field validator of a maximum `field`, checked against its minimum field `lower` validated just before
    it (the error names both); assign it in the class body."""
    def check(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get(lower)
        if minimum is not None and value < minimum:
            raise ValueError(f"{field} ({value}) must be >= {lower} ({minimum})")
        return value
    return field_validator(field)(classmethod(check))


def _unreserved(field: str, reserved: Collection[str], by: str, hint: str) -> Any:
    """The field validator of a name `field` that must not be one of `reserved` (ValueError "'<value>' is
    reserved <by>; choose another name<hint>"); assign it in the class body."""
    def check(cls, value: str) -> str:
        if value in reserved:
            raise ValueError(f"{value!r} is reserved {by}; choose another name{hint}")
        return value
    return field_validator(field)(classmethod(check))


def _memory_for_cpu(sizes: Mapping[str, tuple[str, ...]], problem: Callable[[Any, Any], str]) -> Any:
    """The field validator of `memory`, checked against the `cpu` field validated just before it: memory must be
    one of sizes[str(cpu)] (compared as text), else ValueError(problem(memory, cpu)); assign it in the class
    body."""
    def check(cls, value: str | int, info: ValidationInfo) -> str | int:
        cpu = info.data.get("cpu")
        if cpu is not None and str(value) not in sizes[str(cpu)]:
            raise ValueError(problem(value, cpu))
        return value
    return field_validator("memory")(classmethod(check))


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False)


class NetworkConfig(Strict):
    vpc_cidr: str = "10.0.0.0/16"
    az_count: int = Field(2, ge=2, le=3)
    nat_mode: Literal["single", "one_per_az"] = "single"

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"must be an IPv4 network such as 10.0.0.0/16 ({exc})") from None
        if not 16 <= network.prefixlen <= 20:
            raise ValueError("prefix length must be between /16 and /20 (room for 9 subnets of /24 or more)")
        if not any(network.subnet_of(block) for block in RFC1918):
            raise ValueError("must be inside a private RFC 1918 range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        return value

    @property
    def nat_gateway_count(self) -> int:
        """NAT gateways the network stack creates: one (`single`) or one per AZ (`one_per_az`)."""
        return 1 if self.nat_mode == "single" else self.az_count


class DatabaseConfig(Strict):
    engine_version: str = "17.7"
    database_name: Annotated[str, _matching(r"[a-z][a-z0-9_]{0,62}", "1-63 characters: lower-case letters, "
                                            "digits and '_', starting with a letter")] = "app"
    min_acu: float = Field(0.5, ge=0, le=256)
    max_acu: float = Field(4, ge=1, le=256)
    seconds_until_auto_pause: int | None = Field(None, ge=300, le=86400)
    reader: bool = False
    backup_retention_days: int = Field(7, ge=1, le=35)
    deletion_protection: bool = True
    performance_insights_retention_days: Literal[7, 31, 62, 93, 124, 155, 186, 217, 248, 279, 310, 341, 372,
                                                 403, 434, 465, 496, 527, 558, 589, 620, 651, 682, 713, 731] = 7
    # UTC; RDS wants both windows >= 30 minutes and not overlapping (AWS Backup runs at backup.schedule).
    backup_window: Annotated[str, _matching(
        r"([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]",
        "a daily UTC window hh:mm-hh:mm like 02:00-03:00")] = "02:00-03:00"
    maintenance_window: Annotated[str, _matching(
        r"(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]-"
        r"(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]",
        "a weekly UTC window ddd:hh:mm-ddd:hh:mm like sun:04:00-sun:05:00")] = "sun:04:00-sun:05:00"

    @field_validator("engine_version")
    @classmethod
    def _version(cls, value: str) -> str:
        match = re.fullmatch(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", value)
        if not match or int(match[1]) not in AURORA_PG_AUTO_PAUSE_MIN_MINOR:
            majors = ", ".join(f"{m}.x" for m in AURORA_PG_AUTO_PAUSE_MIN_MINOR)
            raise ValueError(f"must be an Aurora PostgreSQL version 'MAJOR.MINOR' written as RDS does (no leading "
                             f"zeros, e.g. 17.7) on {majors}")
        if int(match[2]) < AURORA_PG_AUTO_PAUSE_MIN_MINOR[int(match[1])]:
            raise ValueError(
                f"must be at least {match[1]}.{AURORA_PG_AUTO_PAUSE_MIN_MINOR[int(match[1])]} "
                "(first minor with 0-ACU auto-pause and managed master secrets)")
        return value

    _not_reserved = _unreserved("database_name", RESERVED_DATABASE_NAMES, "by PostgreSQL or RDS (postgres, "
                                "template0, template1, rdsadmin and SQL key words such as user, table, select)",
                                ", e.g. 'app'")

    @field_validator("min_acu", "max_acu")
    @classmethod
    def _half_steps(cls, value: float) -> float:
        if (value * 2) != int(value * 2):
            raise ValueError("must be a multiple of 0.5 ACU")
        return value

    @model_validator(mode="after")
    def _capacity(self) -> DatabaseConfig:
        if self.max_acu < self.min_acu:
            raise ValueError(f"max_acu ({self.max_acu}) must be >= min_acu ({self.min_acu})")
        if self.seconds_until_auto_pause is not None and self.min_acu != 0:
            raise ValueError("seconds_until_auto_pause is allowed only when min_acu = 0 (auto-pause)")
        if self.min_acu == 0 and self.seconds_until_auto_pause is None:
            raise ValueError("min_acu = 0 needs seconds_until_auto_pause (300..86400)")
        _check_windows(self.backup_window, self.maintenance_window)
        return self


_WEEK_MINUTES = 7 * 24 * 60
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _window_minutes(field: str, window: str, weekly: bool) -> list[tuple[int, int]]:
    """A window as [start, end) minute ranges of the week (daily windows repeat every day)."""
    def minute(point: str) -> int:
        *day, hours, minutes = point.split(":")
        return (_DAYS.index(day[0]) * 1440 if day else 0) + int(hours) * 60 + int(minutes)
    start, end = (minute(p) for p in window.split("-"))
    period = _WEEK_MINUTES if weekly else 1440
    length = (end - start) % period
    if length < 30:
        raise ValueError(f"{field} {window!r} must last at least 30 minutes (RDS minimum)")
    starts = [start] if weekly else [start + day * 1440 for day in range(7)]
    return [(s, s + length) for s in starts]


def _check_windows(backup: str, maintenance: str) -> None:
    """RDS refuses a backup window shorter than 30 minutes or overlapping the maintenance window."""
    daily = _window_minutes("backup_window", backup, weekly=False)
    weekly = _window_minutes("maintenance_window", maintenance, weekly=True)
    for b_start, b_end in daily:
        for m_start, m_end in weekly:
            for shift in (-_WEEK_MINUTES, 0, _WEEK_MINUTES):
                if b_start < m_end + shift and m_start + shift < b_end:
                    raise ValueError(f"backup_window {backup!r} overlaps maintenance_window {maintenance!r}")


class StorageConfig(Strict):
    intelligent_tiering_after_days: int = Field(30, ge=0, le=3650)
    noncurrent_version_expiration_days: int = Field(90, ge=1, le=3650)
    abort_incomplete_upload_days: int = Field(7, ge=1, le=365)
    access_log_expiration_days: int = Field(365, ge=1, le=3650)


class BackupConfig(Strict):
    retention_days: int = Field(35, ge=1, le=36500)
    schedule: str = "cron(0 3 * * ? *)"

    @field_validator("schedule")
    @classmethod
    def _daily_cron(cls, value: str) -> str:
        """A daily AWS Backup schedule: cron(MINUTE HOUR * * ? *), minute 0-59, hour 0-23 (UTC).
        https://docs.aws.amazon.com/AmazonCloudWatch/latest/events/ScheduledEvents.html#CronExpressions"""
        match = re.fullmatch(r"cron\(([0-9]{1,2}) ([0-9]{1,2}) \* \* \? \*\)", value)
        if not match or int(match[1]) > 59 or int(match[2]) > 23:
            raise ValueError("must be a daily schedule cron(MINUTE HOUR * * ? *) with MINUTE 0-59 and HOUR 0-23 "
                             "(UTC), e.g. cron(0 3 * * ? *)")
        return value


def _check_trail_archive(archive: int, retention: int) -> None:
    if archive and archive + 90 > retention:
        raise ValueError(
            f"trail_log_archive_after_days ({archive}) must be at least 90 days before "
            f"trail_log_retention_days ({retention}): Glacier Instant Retrieval bills "
            "a 90-day minimum; use 0 to never archive")


class SecurityConfig(Strict):
    """Per-environment audit trail (security stack), off by default: the account-level trail of the bootstrap
    stack (`cloudtrail` in config/account.toml) records every environment of the account. A second trail in one
    account bills management events ($2 per 100,000); opt in only for a reason (e.g. a separate bucket)."""

    cloudtrail: bool = False
    trail_log_retention_days: int = Field(365, ge=90, le=3650)
    trail_log_archive_after_days: int = Field(90, ge=0, le=3650)  # to Glacier Instant Retrieval; 0 = never

    @model_validator(mode="after")
    def _archive_before_expiry(self) -> SecurityConfig:
        _check_trail_archive(self.trail_log_archive_after_days, self.trail_log_retention_days)
        return self


class LoggingConfig(Strict):
    retention_days: int = 90

    @field_validator("retention_days")
    @classmethod
    def _allowed(cls, value: int) -> int:
        allowed = [d for d in LOG_RETENTION_DAYS if d >= MIN_LOG_RETENTION_DAYS]
        if value not in allowed:
            raise ValueError(f"must be one of CloudWatch's values >= {MIN_LOG_RETENTION_DAYS}: "
                             + ", ".join(map(str, allowed)))
        return value


class AlertThresholds(Strict):
    backend_5xx_rate_percent: float = Field(5, gt=0, le=100)
    backend_p99_latency_ms: int = Field(3000, ge=100, le=120000)
    capacity_ratio: float = Field(0.8, gt=0, le=1)
    database_cpu_percent: float = Field(80, gt=0, le=100)
    database_connections: int = Field(500, ge=1)
    replica_lag_ms: int = Field(2000, ge=1)
    frontend_5xx_count: int = Field(10, ge=1)
    nat_port_allocation_errors: int = Field(1, ge=1)
    waf_blocked_requests: int = Field(1000, ge=1)
    # Age of the oldest run waiting in the worker queue (seconds) before it alarms.
    worker_queue_age_seconds: int = Field(900, ge=60, le=1_209_600)
    # The 5xx rate counts only 5-minute periods with at least this many requests (1 error in 2 is not an outage).
    backend_5xx_min_requests: int = Field(20, ge=1)


class AlertsConfig(Strict):
    emails: Annotated[list[Email], _unique("address")] = Field(default_factory=list, max_length=10)
    thresholds: AlertThresholds = AlertThresholds()


class BudgetConfig(Strict):
    monthly_usd: float = Field(ge=MIN_BUDGET_USD, le=1_000_000)
    forecast_threshold_percent: float = Field(100, gt=0, le=1000)
    actual_threshold_percent: float = Field(80, gt=0, le=1000)
    # Cost Anomaly Detection alerts when an anomaly's total impact reaches this many USD.
    anomaly_threshold_usd: float = Field(20, ge=1, le=1_000_000)
    # Monthly limit per Component tag value (backend, data, ...); a component not listed gets monthly_usd.
    component_limits_usd: dict[str, float] = Field(default_factory=dict)

    @field_validator("component_limits_usd")
    @classmethod
    def _component_limits(cls, value: dict[str, float]) -> dict[str, float]:
        for component, limit in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,30}", component):
                raise ValueError(f"{component!r} is not a component name (lower-case, e.g. 'backend')")
            if isinstance(limit, bool) or not MIN_BUDGET_USD <= limit <= 1_000_000:
                raise ValueError(f"{component}: limit must be a number from {MIN_BUDGET_USD:g} to 1000000 USD "
                                 f"(got {limit})")
        return dict(sorted(value.items()))


# Fargate's valid task sizes as ECS strings: CPU units -> memory MiB
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size).
FARGATE_SIZES: dict[str, tuple[str, ...]] = {
    "256": ("512", "1024", "2048"),
    "512": tuple(str(m) for m in range(1024, 4097, 1024)),
    "1024": tuple(str(m) for m in range(2048, 8193, 1024)),
    "2048": tuple(str(m) for m in range(4096, 16385, 1024)),
    "4096": tuple(str(m) for m in range(8192, 30721, 1024)),
    "8192": tuple(str(m) for m in range(16384, 61441, 4096)),
    "16384": tuple(str(m) for m in range(32768, 122881, 8192)),
}

APP_RUNNER = "apprunner"
ECS_EXPRESS = "ecs-express"
BACKEND_PLATFORMS = (APP_RUNNER, ECS_EXPRESS)

# SSE capacity of one service process (apprunner/README.md, bench_sse.py): 4000 concurrent streams with p99
# heartbeat lateness under 1 s, 2000 under 25 ms. ECS Express scales on requests per task per minute, and one
# open stream is one request every sse_max_stream_seconds, so the scaling target bounds the streams per task.
SSE_STREAMS_PER_PROCESS = 4000
# Idle timeout of the load balancer ECS Express Mode manages: the ALB default (60 s); Express Mode exposes no
# setting for it (AWS::ECS::ExpressGatewayService has none). The service's SSE heartbeat (15 s) keeps streams busy.
EXPRESS_ALB_IDLE_TIMEOUT_SECONDS = 60


class BackendBase(Strict):
    """Settings every backend platform shares. Platform-specific sizes and scaling live in the subclasses."""

    platform: str
    min_instances: int = Field(1, ge=1, le=25)
    max_instances: int = Field(4, ge=1, le=25)
    port: int = Field(8080, ge=1, le=65535)
    health_check_path: Annotated[str, _matching(r"/[A-Za-z0-9/_.-]*", "a URL path starting with '/' "
                                                "(letters, digits and / _ . -)")] = "/healthz"
    sse_max_stream_seconds: int = Field(100, ge=10, le=110)
    waf_rate_limit_per_5_min: int = Field(2000, ge=10, le=2_000_000_000)
    # The application's own plain variables, next to the contract's (never a secret value: use `secrets`).
    environment: dict[str, str] = Field(default_factory=dict, max_length=100)
    # Secrets Manager secrets of the environment (no value in any template), injected by ARN as UPPER_SNAKE.
    secrets: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRETS), min_length=1, max_length=20)
    # Docker build context and test root of the backend: a folder of this repository (relative, no '..').
    source_dir: str = Field("apprunner", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$",
                            max_length=200)

    _instance_range = _not_below("max_instances", "min_instances")
    _environment = _variables_validator(BACKEND_KIT_VARIABLES)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        for name in value:
            if not SECRET_NAME.fullmatch(name) or len(name) > MAX_SECRET_NAME_LENGTH:
                raise ValueError(f"{name!r} is not a secret name: kebab-case, [a-z][a-z0-9]*(-[a-z0-9]+)*, "
                                 f"at most {MAX_SECRET_NAME_LENGTH} characters (e.g. 'stripe-api-key')")
            if name in RESERVED_SECRET_NAMES:
                raise ValueError(f"{name!r} is the account-level Git provider token; choose another name")
            problem = _variable_problem(secret_variable(name), BACKEND_KIT_VARIABLES)
            if problem:
                raise ValueError(f"{name!r} would be injected as {problem}")
        camel = [name.replace("-", "") for name in value]
        if len(set(camel)) != len(camel):
            raise ValueError("each secret may appear once (names that differ only in dashes count as the same)")
        return value

    @model_validator(mode="after")
    def _secret_names_free(self) -> BackendBase:
        clash = sorted(set(self.environment) & {secret_variable(name) for name in self.secrets})
        if clash:
            raise ValueError(f"backend.environment sets {', '.join(clash)}, which backend.secrets injects; "
                             "keep a name in one of them")
        return self


class AppRunnerBackend(BackendBase):
    """AWS App Runner (closed to new customers since 2026-04-30; existing customers keep it)."""

    platform: Literal["apprunner"] = APP_RUNNER
    cpu: Literal["0.25 vCPU", "0.5 vCPU", "1 vCPU", "2 vCPU", "4 vCPU"] = "1 vCPU"
    memory: Literal["0.5 GB", "1 GB", "2 GB", "3 GB", "4 GB", "6 GB", "8 GB", "10 GB", "12 GB"] = "2 GB"
    max_concurrency: int = Field(200, ge=1, le=200)  # justified by apprunner/bench_sse.py (see apprunner/README.md)
    # App Runner ends every request at 120 s: a stream must end itself before (AWS-FACTS 2).
    sse_max_stream_seconds: int = Field(100, ge=10, le=110)

    # Field validators (not a model validator) so the error names the exact field: backend.memory, ...
    _size_pair = _memory_for_cpu(APP_RUNNER_SIZES, lambda memory, cpu: (
        f"memory {memory!r} is not valid with cpu {cpu!r}; App Runner allows "
        + "; ".join(f"{c}: {', '.join(m)}" for c, m in APP_RUNNER_SIZES.items())))


def _fargate_steps(cpu: str) -> str:
    """Fargate's memory sizes for `cpu` as "first..last in steps of N" (MiB)."""
    memory = FARGATE_SIZES[cpu]
    return f"{memory[0]}..{memory[-1]} in steps of {int(memory[1]) - int(memory[0])}"


class ExpressBackend(BackendBase):
    """Amazon ECS Express Mode on Fargate (AWS::ECS::ExpressGatewayService) behind an ECS-managed ALB."""

    platform: Literal["ecs-express"] = ECS_EXPRESS
    cpu: Literal["256", "512", "1024", "2048", "4096", "8192", "16384"] = "1024"
    memory: Annotated[str, _matching(r"[0-9]+", "Fargate memory in MiB as digits, e.g. \"2048\"")] = "2048"
    # An ALB does not cut a response at 120 s; a stream is still bounded so that a client reconnects (and so
    # lands on a task added by scale-out, or leaves a task being replaced) within this time. 900 s keeps a
    # reconnect inside the ALB's default 300 s deregistration delay plus margin in practice.
    sse_max_stream_seconds: int = Field(300, ge=10, le=900)
    # Target of the REQUEST_COUNT_PER_TARGET policy: ALB requests per task per minute. An open stream counts
    # one request per sse_max_stream_seconds, so 400/min with 300 s streams is up to 2000 streams per task.
    requests_per_target: int = Field(400, ge=10, le=100_000)

    _size_pair = _memory_for_cpu(FARGATE_SIZES, lambda memory, cpu: (
        f"memory {memory!r} (MiB) is not valid with cpu {cpu!r} on Fargate; allowed {_fargate_steps(cpu)} "
        "(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html)"))

    @field_validator("requests_per_target")
    @classmethod
    def _streams_per_task(cls, value: int, info: ValidationInfo) -> int:
        seconds = info.data.get("sse_max_stream_seconds")
        if seconds is not None and value * seconds / 60 > SSE_STREAMS_PER_PROCESS:
            raise ValueError(
                f"{value} requests per task per minute with sse_max_stream_seconds = {seconds} allows up to "
                f"{value * seconds // 60} open streams per task; the SSE benchmark holds {SSE_STREAMS_PER_PROCESS} "
                "with heartbeats on time (apprunner/README.md): lower one of them")
        return value


BackendConfig = Annotated[AppRunnerBackend | ExpressBackend, Field(discriminator="platform")]


ECS_MAX_STOP_TIMEOUT_SECONDS = 120  # Fargate: SIGTERM, then SIGKILL at most 120 s later
SQS_MAX_VISIBILITY_TIMEOUT_SECONDS = 43200  # 12 hours (SQS quota)


def _fargate_pairs() -> str:
    def span(values: tuple[str, ...]) -> str:
        if len(values) <= 4:
            return ", ".join(values)
        return f"{values[0]}..{values[-1]} step {int(values[1]) - int(values[0])}"
    return "; ".join(f"{cpu}: {span(memory)}" for cpu, memory in FARGATE_SIZES.items())


class WorkersConfig(Strict):
    """The worker tier (workers stack): an SQS run queue and an ECS Fargate service running the backend image
    with its worker entry point, scaled on backlog per task. CPU in CPU units (1024 = 1 vCPU), memory in MiB,
    timeouts in seconds."""

    enabled: bool = True
    cpu: Literal[256, 512, 1024, 2048, 4096, 8192, 16384] = 512
    memory: int = 1024
    min_tasks: int = Field(0, ge=0, le=100)        # 0 = scale to zero when the queue is empty
    max_tasks: int = Field(4, ge=1, le=100)
    target_backlog_per_task: int = Field(2, ge=1, le=1000)  # runs waiting or in flight per running task
    max_receive_count: int = Field(5, ge=1, le=1000)        # receives before a run goes to the dead-letter queue
    visibility_timeout_seconds: int = Field(300, ge=30, le=SQS_MAX_VISIBILITY_TIMEOUT_SECONDS)
    stop_timeout_seconds: int = Field(110, ge=2, le=ECS_MAX_STOP_TIMEOUT_SECONDS)
    spot: bool = False
    container_insights: Literal["enabled", "enhanced", "disabled"] = "enabled"

    _fargate_pair = _memory_for_cpu(FARGATE_SIZES, lambda memory, cpu: (
        f"memory {memory} MiB is not valid with cpu {cpu}; Fargate allows {_fargate_pairs()}"))

    _task_range = _not_below("max_tasks", "min_tasks")

    @field_validator("container_insights")
    @classmethod
    def _insights_for_scaling(cls, value: str, info: ValidationInfo) -> str:
        # Backlog per task divides by ECS/ContainerInsights RunningTaskCount: without Container Insights the
        # metric does not exist and the scaling policies would act on missing data.
        low, high = info.data.get("min_tasks"), info.data.get("max_tasks")
        if value == "disabled" and low is not None and high is not None and low != high:
            raise ValueError("'disabled' is allowed only with min_tasks = max_tasks (no autoscaling): scaling on "
                             "backlog per task reads RunningTaskCount, which only Container Insights publishes")
        return value


class CustomDomain(Strict):
    name: Annotated[str, Field(max_length=253), _matching(
        f"({_DNS_LABEL}\\.)+([a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})",
        "a domain name like example.com: lower-case, no scheme (https://), no path, no trailing dot, "
        "punycode (xn--...) for non-ASCII names")]
    subdomains: Annotated[list[DnsLabel], _unique("sub-domain")] = Field(
        default_factory=lambda: ["", "www"], min_length=1, max_length=50)

    @property
    def is_example(self) -> bool:
        return any(self.name == d or self.name.endswith("." + d) for d in EXAMPLE_DOMAINS)

    @property
    def origins(self) -> list[str]:
        return [f"https://{p + '.' if p else ''}{self.name}" for p in self.subdomains]


class FrontendConfig(Strict):
    repository: str
    branch: GitBranch
    custom_domain: CustomDomain | None = None
    pull_request_previews: bool = False
    node_version: Literal["20", "22"] = "20"
    # Plain build-time variables of the Amplify branch (the backend URL stays the kit's).
    environment: dict[str, str] = Field(default_factory=dict, max_length=100)

    _environment = _variables_validator(FRONTEND_KIT_VARIABLES)

    @field_validator("repository")
    @classmethod
    def _https(cls, value: str) -> str:
        if not re.fullmatch(rf"https://({_DNS_LABEL}\.)+[a-z]{{2,63}}/{_REPO_PART}/{_REPO_PART}", value):
            raise ValueError("must be an HTTPS repository URL like https://github.com/org/repo")
        if value.endswith(".git"):
            raise ValueError("must not end in .git (Amplify expects the plain HTTPS URL)")
        return value


class EnvironmentConfig(Strict):
    """One deployable environment (dev, prod, ...)."""

    name: EnvironmentName
    app_name: Name
    account_id: AccountId | None = None
    region: Region | None = None
    production: bool = False
    network: NetworkConfig = NetworkConfig()
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    backup: BackupConfig = BackupConfig()
    security: SecurityConfig = SecurityConfig()
    logging: LoggingConfig = LoggingConfig()
    alerts: AlertsConfig = AlertsConfig()
    budget: BudgetConfig
    backend: BackendConfig = AppRunnerBackend()
    workers: WorkersConfig = WorkersConfig()
    frontend: FrontendConfig

    @model_validator(mode="before")
    @classmethod
    def _default_platform(cls, data):
        """A `[backend]` table without `platform` means App Runner (the kit's first platform)."""
        if isinstance(data, dict) and isinstance(data.get("backend"), dict) and "platform" not in data["backend"]:
            data = {**data, "backend": {**data["backend"], "platform": APP_RUNNER}}
        return data

    _not_reserved = _unreserved("name", RESERVED_ENVIRONMENT_NAMES, "for the account-level stacks",
                                f" (reserved: {', '.join(RESERVED_ENVIRONMENT_NAMES)})")

    @model_validator(mode="after")
    def _production_rules(self) -> EnvironmentConfig:
        if self.production and not self.database.deletion_protection:
            raise ValueError("database.deletion_protection must be true when production = true")
        if self.database.reader and self.network.az_count < 2:
            raise ValueError("database.reader needs network.az_count >= 2 (reader goes in another AZ)")
        if self.production and self.workers.enabled and self.workers.spot:
            raise ValueError("workers.spot must be false when production = true: the service runs on FARGATE_SPOT "
                             "only, with no on-demand fallback, so runs wait while Spot has no capacity")
        return self

    @property
    def frontend_branch_host_prefix(self) -> str:
        """Amplify serves a branch at https://<branch with '/' as '-'>.<app default domain>."""
        return self.frontend.branch.replace("/", "-")


class AccountConfig(Strict):
    """Account- and region-level settings: the bootstrap and pipeline stacks."""

    app_name: Name
    account_id: AccountId | None = None
    region: Region | None = None
    ecr_keep_images: int = Field(100, ge=1, le=1000)
    # How far back a release can be rolled back to (CodePipeline rollback to an older execution, `adkit` with
    # packaged templates): its artifacts, including the packaged nested templates, must still exist.
    rollback_window_days: int = Field(365, ge=1, le=3650)
    artifact_expiration_days: int = Field(365, ge=1, le=3650)
    access_log_expiration_days: int = Field(365, ge=1, le=3650)  # S3 access logs of the artifact bucket
    # The account-level CloudTrail trail (bootstrap stack); turn off when an organization trail records the account.
    cloudtrail: bool = True
    trail_log_retention_days: int = Field(365, ge=90, le=3650)
    trail_log_archive_after_days: int = Field(90, ge=0, le=3650)  # to Glacier Instant Retrieval; 0 = never
    source_repository: Annotated[str, _matching(rf"{_REPO_PART}/{_REPO_PART}",
                                                "OWNER/REPOSITORY like my-org/my-repo (no URL)")]
    source_branch: GitBranch = "main"
    source_provider: Literal["GitHub", "GitHubEnterpriseServer", "Bitbucket", "GitLab"] = "GitHub"
    # GitHub Enterprise Server connections go through a host (created once in the console); its ARN here.
    source_host_arn: Annotated[str, _matching(
        r"arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:[0-9]{12}:host/[A-Za-z0-9_-]{1,64}/?"
        r"[A-Za-z0-9_-]{0,64}", "a CodeConnections host ARN like "
        "arn:aws:codeconnections:eu-west-1:123456789012:host/my-host-1a2b3c4d")] | None = None
    pipeline_environments: list[EnvironmentName] = Field(default_factory=lambda: ["dev", "prod"], min_length=2)
    approval_emails: Annotated[list[Email], _unique("address")] = Field(default_factory=list, max_length=10)
    logging: LoggingConfig = LoggingConfig()

    @field_validator("artifact_expiration_days")
    @classmethod
    def _covers_rollback_window(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("rollback_window_days")
        if window is not None and value < window:
            raise ValueError(f"must be >= rollback_window_days ({window}): a rollback to a release inside the "
                             "window needs its pipeline artifacts and packaged templates")
        return value

    @field_validator("pipeline_environments")
    @classmethod
    def _unique_environments(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each environment may appear once (promotion order)")
        return value

    @model_validator(mode="after")
    def _trail_archive(self) -> AccountConfig:
        _check_trail_archive(self.trail_log_archive_after_days, self.trail_log_retention_days)
        return self

    @model_validator(mode="after")
    def _source_host(self) -> AccountConfig:
        if (self.source_provider == "GitHubEnterpriseServer") != (self.source_host_arn is not None):
            raise ValueError("source_host_arn is required with source_provider = 'GitHubEnterpriseServer' "
                             "and allowed only with it")
        return self


class ConfigError(Exception):
    """A configuration file is missing or invalid; the message is ready to print."""


def _shown(value: object, limit: int = 80) -> str:
    """repr of a given value, cut to `limit` characters (a deeply nested value must not flood the message)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _format(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid configuration ({error.error_count()} problem(s))"]
    for item in error.errors():
        # A discriminated union (backend.platform) adds the tag to the location: backend.ecs-express.memory.
        loc = [part for index, part in enumerate(item["loc"])
               if not (index == 1 and item["loc"][0] == "backend" and part in BACKEND_PLATFORMS)]
        field = ".".join(str(part) for part in loc) or "(file)"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see README 'Configuration reference')"
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field += ".platform"
            message = "must be one of " + ", ".join(repr(p) for p in BACKEND_PLATFORMS)
            value = item.get("ctx", {}).get("tag")
        shown = "" if isinstance(value, dict) or item["type"] in ("missing", "union_tag_not_found") \
            else f" (got {_shown(value)})"
        lines.append(f"  {field}: {message}{shown}")
    return "\n".join(lines)


def read_text(path: Path) -> str:
    """The file as text; ConfigError naming the first byte that is not UTF-8 (and its offset) otherwise."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")   # a byte-order mark some Windows editors write
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save the file as UTF-8") from None


def _read(path: Path) -> dict:
    """Every config file is read here (render, check and every AWS command go through load_*)."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: values nested too deeply") from None


def environment_names(directory: Path = ENVIRONMENTS_DIR) -> list[str]:
    """Every environment is one file: config/environments/<name>.toml."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def parse_environment(data: dict, source: Path | str = "<config>") -> EnvironmentConfig:
    try:
        return EnvironmentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(Path(source), exc)) from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid configuration: values nested too deeply") from None


def load_environment(name: str, directory: Path = ENVIRONMENTS_DIR) -> EnvironmentConfig:
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(environment_names(directory)) or "none"
        raise ConfigError(f"unknown environment {name!r}: no file {path} (known environments: {known})")
    data = _read(path)
    config = parse_environment(data, path)
    if config.name != name:
        raise ConfigError(f"{path}: name: must equal the file name {name!r} (got {config.name!r})")
    return config


def load_account(path: Path = ACCOUNT_FILE) -> AccountConfig:
    data = _read(path)
    try:
        return AccountConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(path, exc)) from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid configuration: values nested too deeply") from None


def load_all(directory: Path = ENVIRONMENTS_DIR) -> list[EnvironmentConfig]:
    return [load_environment(name, directory) for name in environment_names(directory)]


def check_pipeline_environments(account: AccountConfig, environments: list[EnvironmentConfig],
                                account_file: Path = ACCOUNT_FILE, environments_dir: Path = ENVIRONMENTS_DIR) -> None:
    """The promotion order of `pipeline_environments`, checked in one place for the renderer and the pipeline.

    Every name must be a known environment; a production environment must come after every non-production one,
    and only the last may be production: the pipeline puts its manual approval in front of the last environment
    only, so a production one before it would deploy unapproved. Raises ConfigError naming `account_file`.
    """
    order = account.pipeline_environments
    missing = [name for name in order if name not in {e.name for e in environments}]
    if missing:
        raise ConfigError(f"{account_file}: pipeline_environments: unknown environment(s) {missing}; "
                          f"known: {sorted(e.name for e in environments)} (files in {environments_dir})")
    production = {e.name for e in environments if e.production}
    for index, name in enumerate(order[:-1]):
        if name in production:
            later = [n for n in order[index + 1:] if n not in production]
            detail = (f"non-production {later} come(s) after it" if later else
                      "only the last environment waits for the manual approval, so it would deploy unapproved")
            raise ConfigError(
                f"{account_file}: pipeline_environments: production environment {name!r} must be last, behind the "
                f"approval ({detail}); put every non-production environment first (got {order})")
