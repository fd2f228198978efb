"""Change sets: create (with nested stacks), wait, read back as a tree, delete.

"No changes" is not an error: CloudFormation marks such a change set FAILED with a known reason
(or refuses it up front); both come back as `None` from `create_and_wait`, with the change set gone.
A FAILED root change set of a nested hierarchy only says "Nested change set <arn> was not
successfully created"; `failure_reason` follows those arns down to the change set that says why.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from generator.deploy.errors import DeployFailed
from generator.deploy.session import Aws
from generator.deploy.templates import NESTED_STACK

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
CREATING = ("CREATE_PENDING", "CREATE_IN_PROGRESS")
_NESTED_FAILED = re.compile(r"Nested change set (arn:\S+?) was not successfully created")
STATEFUL_TYPES = frozenset({
    "AWS::RDS::DBCluster", "AWS::RDS::DBInstance", "AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Logs::LogGroup",
    "AWS::Backup::BackupVault", "AWS::SecretsManager::Secret", "AWS::ECR::Repository",
})


@dataclass(frozen=True)
class Ref:
    """A created change set."""

    id: str
    stack_id: str
    change_type: str   # CREATE or UPDATE


@dataclass
class Change:
    action: str                      # Add, Modify, Remove, Import, Dynamic
    logical_id: str
    resource_type: str
    replacement: str = ""            # True, False, Conditional ('' when not applicable)
    description: str = ""            # Metadata `adkit:description`, if the template has one
    properties: tuple[str, ...] = ()  # names of changed properties
    dynamic: bool = False            # every recreating detail is Evaluation=Dynamic (known only during the deploy)

    @property
    def replaces(self) -> bool:
        return self.action == "Modify" and self.replacement in ("True", "Conditional")

    @property
    def stateful(self) -> bool:
        return self.resource_type in STATEFUL_TYPES

    @property
    def destroys_data(self) -> bool:
        return self.stateful and (self.action == "Remove" or self.replaces)

    @property
    def name(self) -> str:
        return f"{self.description} [{self.logical_id}]" if self.description else self.logical_id


@dataclass
class StackChanges:
    """Changes of one stack; nested stacks' own changes hang below them."""

    label: str                           # '' for the root, else the logical-id path (Data, Data/Inner)
    changes: list[Change] = field(default_factory=list)
    children: list[StackChanges] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def leaf_changes(self) -> list[tuple[str, Change]]:
        """(stack label, change) for every change except "this nested stack changes" (its details are below)."""
        labels = {stack.label for stack in self.walk()}
        return [(stack.label, change) for stack in self.walk() for change in stack.changes
                if not (change.resource_type == NESTED_STACK and _path(stack.label, change.logical_id) in labels)]


def _path(label: str, logical_id: str) -> str:
    return f"{label}/{logical_id}" if label else logical_id


def new_name(prefix: str = "adkit") -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def create(aws: Aws, *, stack_name: str, change_type: str, body: str, url: str | None,
           parameters: list[dict], tags: dict[str, str], description: str, nested: bool) -> Ref | None:
    """Create the change set; None if CloudFormation refused it up front for having no changes."""
    template = {"TemplateURL": url} if url else {"TemplateBody": body}
    try:
        response = aws.client("cloudformation").create_change_set(
            StackName=stack_name, ChangeSetName=new_name(), ChangeSetType=change_type, Parameters=parameters,
            Capabilities=CAPABILITIES, Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            Description=description[:1024], IncludeNestedStacks=nested, **template)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if any(marker in message for marker in NO_CHANGES):
            return None
        raise DeployFailed(f"CloudFormation refused the change set for {stack_name}", message,
                           "fix the template or parameters it names (`make render`), then retry") from None
    return Ref(id=response["Id"], stack_id=response["StackId"], change_type=change_type)


def wait(aws: Aws, ref: Ref, poll: float, timeout: float = 1800) -> dict:
    """Poll until the change set is created (or failed); returns its description (still CREATING on timeout)."""
    return _wait_created(aws, ref.id, poll, timeout)


def _wait_created(aws: Aws, change_set_id: str, poll: float, timeout: float) -> dict:
    cfn = aws.client("cloudformation")
    deadline = time.monotonic() + timeout
    while True:
        described = cfn.describe_change_set(ChangeSetName=change_set_id)
        if described["Status"] not in CREATING or time.monotonic() > deadline:
            return described
        time.sleep(poll)


def failure_reason(aws: Aws, described: dict, depth: int = 0) -> str:
    """StatusReason of a FAILED change set; for "Nested change set <arn> was not successfully created",
    the reason of that nested change set instead (recursively), prefixed with its stack's name."""
    reason = described.get("StatusReason") or described.get("Status", "")
    found = _NESTED_FAILED.search(reason)
    if not found or depth > 5:
        return reason
    try:
        nested = aws.client("cloudformation").describe_change_set(ChangeSetName=found.group(1))
    except ClientError:
        return reason
    inner = failure_reason(aws, nested, depth + 1)
    return f"nested stack {nested.get('StackName', '?')}: {inner}" if inner else reason


def not_executable(described: dict) -> str | None:
    """Why a created change set cannot be executed (None if it can)."""
    status = described.get("ExecutionStatus", "AVAILABLE")
    if status == "AVAILABLE":
        return None
    if status == "OBSOLETE":
        return "the stack was updated by someone else after this change set was created (ExecutionStatus OBSOLETE)"
    return f"its ExecutionStatus is {status}, not AVAILABLE"


def has_no_changes(described: dict) -> bool:
    reason = described.get("StatusReason") or ""
    return described["Status"] == "FAILED" and any(marker in reason for marker in NO_CHANGES)


def delete(aws: Aws, ref: Ref, *, delete_empty_stack: bool, poll: float = 5.0, timeout: float = 600) -> None:
    """Delete the change set and, for a first create, the empty REVIEW_IN_PROGRESS stack it made.

    CloudFormation refuses (InvalidChangeSetStatus) to delete a change set it is still creating, which
    is where a Ctrl-C during the wait lands: wait (bounded) for the creation to end, then delete.
    """
    cfn = aws.client("cloudformation")
    try:
        cfn.delete_change_set(ChangeSetName=ref.id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "InvalidChangeSetStatus":
            _wait_created(aws, ref.id, poll, timeout)
            cfn.delete_change_set(ChangeSetName=ref.id)
        elif code not in ("ChangeSetNotFound", "ChangeSetNotFoundException"):
            raise
    if delete_empty_stack and ref.change_type == "CREATE":
        cfn.delete_stack(StackName=ref.stack_id)


def _all_changes(aws: Aws, change_set_id: str) -> list[dict]:
    cfn = aws.client("cloudformation")
    changes, token = [], None
    while True:
        page = cfn.describe_change_set(ChangeSetName=change_set_id, **({"NextToken": token} if token else {}))
        changes += page.get("Changes") or []
        token = page.get("NextToken")
        if not token:
            return changes


def tree(aws: Aws, change_set_id: str, descriptions: dict[str, dict[str, str]], label: str = "") -> StackChanges:
    """The change set and its nested change sets; `descriptions` maps stack label -> logical id -> text."""
    result = StackChanges(label=label)
    texts = descriptions.get(label, {})
    for item in _all_changes(aws, change_set_id):
        rc = item.get("ResourceChange") or {}
        lid = rc.get("LogicalResourceId", "?")
        details = rc.get("Details") or []
        props = tuple(sorted({d["Target"]["Name"] for d in details
                              if d.get("Target", {}).get("Attribute") == "Properties" and d["Target"].get("Name")}))
        # Values passed between nested stacks (GetAtt of outputs) are only known during the deploy:
        # CloudFormation then says Replacement=Conditional with Evaluation=Dynamic, often a false alarm.
        recreating = [d for d in details
                      if (d.get("Target") or {}).get("RequiresRecreation") in ("Always", "Conditionally")]
        result.changes.append(Change(
            action=rc.get("Action", "?"), logical_id=lid, resource_type=rc.get("ResourceType", ""),
            replacement=rc.get("Replacement") or "", description=texts.get(lid, ""), properties=props,
            dynamic=bool(recreating) and all(d.get("Evaluation") == "Dynamic" for d in recreating)))
        if rc.get("ResourceType") == NESTED_STACK and rc.get("ChangeSetId"):
            result.children.append(tree(aws, rc["ChangeSetId"], descriptions, _path(label, lid)))
    return result


def removed_nested_contents(aws: Aws, tree_: StackChanges, physical_ids: dict[str, str]) -> None:
    """A removed nested stack deletes everything in it: list its resources as removals too."""
    from generator.deploy import stacks  # local import keeps this module's dependencies small

    for stack in list(tree_.walk()):
        for change in stack.changes:
            path = _path(stack.label, change.logical_id)
            if change.action == "Remove" and change.resource_type == NESTED_STACK and path in physical_ids:
                inner = StackChanges(label=path, changes=[
                    Change("Remove", r["LogicalResourceId"], r.get("ResourceType", ""))
                    for r in stacks.resources(aws, physical_ids[path])])
                stack.children.append(inner)
