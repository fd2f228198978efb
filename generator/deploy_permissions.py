"""What the CloudFormation deployment role may do, derived from the CloudFormation resource schemas.

Each resource type's schema lists the exact IAM actions its create, read, update and delete handlers call
(`handlers.<op>.permissions`). The union over every type the environment templates use is what
CloudFormation needs to deploy them, and nothing more: no wildcard actions. The schemas are the ones
bundled with cfn-lint (pinned in the dev extra), so the result is deterministic for a given cfn-lint version;
upgrading cfn-lint may change the rendered pipeline template, which the golden check then shows for review.

Read handlers are included because CloudFormation calls them after create/update to resolve attributes
(`Fn::GetAtt`) and during rollback. List handlers are not (only resource import and drift need them).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from troposphere import encode_to_dict

HANDLERS = ("create", "read", "update", "delete")
CUSTOM_RESOURCE_ACTIONS = ("lambda:InvokeFunction",)  # CloudFormation invokes the ServiceToken function

# Types whose schemas declare no handlers (CloudFormation-internal resources) and what they need instead.
NO_HANDLER_TYPES: dict[str, tuple[str, ...]] = {
    "AWS::CloudFormation::WaitConditionHandle": (),
    "AWS::CloudFormation::WaitCondition": (),
    "AWS::CloudFormation::CustomResource": CUSTOM_RESOURCE_ACTIONS,
}

# Scopes: which resources an action may touch. Everything not listed here is granted on "*" (the stacks
# create resources whose names CloudFormation generates, so no narrower ARN is known in advance).
SCOPE_ANY = "any"
SCOPE_STACKS = "stacks"                  # nested stacks of the environment roots
SCOPE_IAM = "iam"                        # roles and managed policies the environment stacks create
SCOPE_PASS_ROLE = "pass-role"            # iam:PassRole of those roles only
SCOPE_SERVICE_LINKED = "service-linked"  # iam:CreateServiceLinkedRole (role/aws-service-role/*)
SCOPE_FUNCTIONS = "functions"            # lambda:InvokeFunction of the stacks' custom-resource functions
# IAM actions that have no resource type (account-level listings) cannot be scoped to a role or policy.
IAM_ACCOUNT_LEVEL = frozenset({"iam:ListRoles", "iam:ListPolicies", "iam:ListInstanceProfiles",
                               "iam:GetAccountSummary", "iam:ListServerCertificates"})

ACTION_PATTERN = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
# IAM managed policy limit (characters, whitespace excluded), the aggregate limit of a role's inline policies and
# the per-role attachment quota (default):
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
MANAGED_POLICY_MAX_CHARS = 6144
ROLE_INLINE_POLICIES_MAX_CHARS = 10240
MAX_MANAGED_POLICIES_PER_ROLE = 10
# Room left in each managed policy for the document skeleton, Sid, Effect and Resource.
POLICY_OVERHEAD_CHARS = 200


class PermissionsError(ValueError):
    """A resource type has no known permissions, or the result cannot be expressed within IAM limits."""


@functools.cache
def _schemas_dir() -> Path:
    """cfn-lint's bundled schema folder, found without importing cfn-lint (its import costs about half a
    second and rendering needs only these data files): `find_spec` of a top-level package locates it on
    sys.path without executing it."""
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or not spec.submodule_search_locations:
        raise PermissionsError("rendering the pipeline needs cfn-lint's resource schemas: "
                               "install the project (`make render` or `make venv`)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "schemas"


@functools.cache
def _provider_index(region: str = "us-east-1") -> Mapping[str, str]:
    return json.loads((_schemas_dir() / "providers" / f"{region}.json").read_text())


def _normalise(action: str) -> str:
    """IAM service prefixes are case-insensitive; some schemas write `CloudTrail:CreateTrail`."""
    prefix, sep, name = action.strip().partition(":")
    return f"{prefix.lower()}{sep}{name}"


@functools.cache
def handler_permissions(resource_type: str) -> frozenset[str]:
    """Actions the create/read/update/delete handlers of one resource type call."""
    if resource_type.startswith("Custom::"):
        return frozenset(CUSTOM_RESOURCE_ACTIONS)
    if resource_type in NO_HANDLER_TYPES:
        return frozenset(NO_HANDLER_TYPES[resource_type])
    index = _provider_index()
    if resource_type not in index:
        raise PermissionsError(f"unknown resource type {resource_type!r}: no CloudFormation schema")
    handle = index[resource_type]
    schema = json.loads((_schemas_dir() / "resources" / (handle if handle.endswith(".json")
                                                          else f"{handle}.json")).read_text())
    handlers = schema.get("handlers") or {}
    if not handlers:
        raise PermissionsError(f"{resource_type} declares no handler permissions; add it to NO_HANDLER_TYPES "
                               "in generator/deploy_permissions.py with the actions CloudFormation needs")
    actions = {_normalise(a) for op in HANDLERS for a in handlers.get(op, {}).get("permissions", []) if a.strip()}
    wildcards = sorted(a for a in actions if "*" in a)
    if wildcards:
        raise PermissionsError(f"{resource_type} handlers list wildcard actions {wildcards}; the deployment "
                               "role grants exact actions only: add the exact actions to NO_HANDLER_TYPES")
    return frozenset(a for a in actions if is_iam_action(a))


@functools.cache
def _iam_actions() -> Mapping[str, frozenset[str]]:
    """Every IAM action by service prefix, lower-cased (cfn-lint's copy of the IAM service reference)."""
    data = json.loads((_schemas_dir().parent / "AdditionalSpecs" / "Policies.json").read_text())
    return {service: frozenset(spec.get("Actions", {})) for service, spec in data.items()}


def is_iam_action(action: str) -> bool:
    """Schemas contain errata that are no IAM action at all (`s3:REST.PUT.OBJECT`, `s3:DeleteBucketCors`,
    `iam:DescribeOrganization`): no API call is authorised against them, so they are left out."""
    if not ACTION_PATTERN.fullmatch(action):
        return False
    service, name = action.split(":", 1)
    return name.lower() in _iam_actions().get(service, frozenset())


def resource_types(templates: Iterable[Mapping]) -> list[str]:
    """Sorted resource types used by templates given as plain data (`generator.cfn.to_data`)."""
    return sorted({r["Type"] for t in templates for r in t.get("Resources", {}).values()})


_SECRET_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:([A-Za-z0-9/_+=.@-]+)(?::|\}\})")


def secret_references(templates: Iterable[Mapping]) -> list[str]:
    """Names of Secrets Manager secrets the templates read through `{{resolve:secretsmanager:NAME...}}`
    (CloudFormation resolves them with the deployment role). Secrets referenced by ARN are not supported."""
    found: set[str] = set()
    for template in templates:
        for name in _SECRET_REFERENCE.findall(json.dumps(template)):
            if name.startswith("arn"):
                raise PermissionsError(f"dynamic reference by ARN ({name}...) is not supported; reference the "
                                       "secret by name so the deployment role can be scoped to it")
            found.add(name)
    return sorted(found)


def deploy_actions(types: Iterable[str]) -> list[str]:
    """Sorted, de-duplicated actions CloudFormation needs to create, update and delete these types."""
    return sorted(set().union(*(handler_permissions(t) for t in types)))


def scope_of(action: str) -> str:
    if action == "iam:PassRole":
        return SCOPE_PASS_ROLE
    if action == "iam:CreateServiceLinkedRole":
        return SCOPE_SERVICE_LINKED
    if action.startswith("iam:") and action not in IAM_ACCOUNT_LEVEL:
        return SCOPE_IAM
    if action.startswith("cloudformation:"):
        return SCOPE_STACKS
    if action == "lambda:InvokeFunction":
        return SCOPE_FUNCTIONS
    return SCOPE_ANY


def by_scope(actions: Iterable[str]) -> dict[str, list[str]]:
    """Actions grouped by the resources they may touch; every group sorted."""
    groups: dict[str, list[str]] = {}
    for action in sorted(set(actions)):
        groups.setdefault(scope_of(action), []).append(action)
    return groups


@dataclass(frozen=True)
class Chunk:
    index: int
    actions: tuple[str, ...]


def policy_chars(document: object) -> int:
    """Characters IAM counts for a policy document (JSON without whitespace). `Fn::Sub` strings are counted as
    written: `${AWS::Partition}`, `${AWS::Region}` and `${AWS::AccountId}` are at least as long as any value
    they resolve to, so this is an upper bound for the deployed document."""
    return len(json.dumps(encode_to_dict(document), separators=(",", ":")))


def chunk_statements(statements: Sequence[object], max_chars: int = MANAGED_POLICY_MAX_CHARS - POLICY_OVERHEAD_CHARS
                     ) -> list[list[object]]:
    """Split statements, in order, into consecutive groups whose JSON stays under `max_chars` each
    (deterministic). Raises PermissionsError when one statement alone is larger."""
    groups: list[list[object]] = [[]]
    size = 0
    for statement in statements:
        cost = policy_chars(statement) + 1  # plus a comma
        if cost > max_chars:
            raise PermissionsError(f"one deployment-role statement needs {cost} characters; a managed policy "
                                   f"holds {max_chars}")
        if groups[-1] and size + cost > max_chars:
            groups.append([])
            size = 0
        groups[-1].append(statement)
        size += cost
    return [g for g in groups if g]


def chunk_actions(actions: Iterable[str], max_chars: int = MANAGED_POLICY_MAX_CHARS - POLICY_OVERHEAD_CHARS,
                  max_chunks: int = MAX_MANAGED_POLICIES_PER_ROLE) -> list[Chunk]:
    """Split sorted actions into consecutive chunks whose JSON list stays under `max_chars` (deterministic:
    the same actions always give the same chunks; a new action shifts only the chunks after it)."""
    chunks: list[list[str]] = [[]]
    size = 2  # the brackets of the JSON list
    for action in sorted(set(actions)):
        cost = len(json.dumps(action)) + 1  # quoted, plus a comma
        if chunks[-1] and size + cost > max_chars:
            chunks.append([])
            size = 2
        chunks[-1].append(action)
        size += cost
    if len(chunks) > max_chunks:
        raise PermissionsError(f"the deployment role would need {len(chunks)} managed policies; IAM allows "
                               f"{max_chunks} per role by default (raise the quota and MAX_MANAGED_POLICIES_PER_ROLE)")
    return [Chunk(i + 1, tuple(c)) for i, c in enumerate(chunks) if c]
