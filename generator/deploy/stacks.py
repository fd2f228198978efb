"""Small CloudFormation read helpers shared by every command (describe, outputs, nested stacks)."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from generator.deploy.session import Aws
from generator.deploy.templates import NESTED_STACK

OK_STATES = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
# The stack works, but its last update was rolled back: usable, and the deploy reports the failure.
USABLE_STATES = OK_STATES | {"UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
# A first create that never finished: nothing to update, the stack must be deleted before a new create.
DEAD_FIRST_CREATE = {"ROLLBACK_COMPLETE", "CREATE_FAILED"}


def is_missing(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", "")


def describe(aws: Aws, name_or_id: str) -> dict | None:
    """The stack, or None when it does not exist (a deleted stack's id gives DELETE_COMPLETE)."""
    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=name_or_id)["Stacks"]
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise
    return stacks[0] if stacks else None


def outputs(stack: dict | None) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in (stack or {}).get("Outputs") or []}


def resources(aws: Aws, stack_id: str) -> list[dict]:
    paginator = aws.client("cloudformation").get_paginator("list_stack_resources")
    return [r for page in paginator.paginate(StackName=stack_id) for r in page["StackResourceSummaries"]]


def nested(aws: Aws, stack_id: str, prefix: str = "") -> dict[str, str]:
    """Label (logical-id path) -> physical id of every nested stack below `stack_id`."""
    result = {}
    for res in resources(aws, stack_id):
        physical = res.get("PhysicalResourceId")
        if res.get("ResourceType") == NESTED_STACK and physical and res.get("ResourceStatus") != "DELETE_COMPLETE":
            label = f"{prefix}/{res['LogicalResourceId']}" if prefix else res["LogicalResourceId"]
            result[label] = physical
            result.update(nested(aws, physical, label))
    return result


def wait_settled(aws: Aws, stack_id: str, poll: float, timeout: float = 7200) -> dict | None:
    """Poll until the stack is no longer *_IN_PROGRESS; None if it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        stack = describe(aws, stack_id)
        if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return stack
        time.sleep(poll)
