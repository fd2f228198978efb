"""`adkit status ENV`: stack states and outputs (the URLs) of a deployed stack, read-only; for an environment
also its health (generator/ops/health.py): image tag, backend state, last frontend build, alarms in ALARM."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from generator.config import ConfigError, load_environment
from generator.deploy import preflight, progress, stacks, stream, templates
from generator.deploy.errors import EXIT_OK, PreflightRefused
from generator.deploy.session import Aws
from generator.deploy.targets import Target
from generator.deploy.ui import Ui


def _descriptions(target: Target) -> dict[str, dict[str, str]]:
    """Descriptions from the local render when it exists (status never requires it)."""
    if not target.template.is_file():
        return {}
    try:
        return {label: templates.descriptions(item.body) for label, item in templates.load(target.template).walk()}
    except Exception:  # a broken local render must not hide the live state
        return {}


def _last_operation_start(aws: Aws, stack_id: str):
    events = aws.client("cloudformation").describe_stack_events(StackName=stack_id)["StackEvents"]
    for event in events:
        if event.get("PhysicalResourceId") == stack_id and event.get("ResourceStatusReason") == "User Initiated":
            return event["Timestamp"]
    return events[-1]["Timestamp"] if events else None


def deployed(aws: Aws, target: Target) -> dict:
    """The target's root stack (DescribeStacks' Stack) after checking credentials, account and region;
    PreflightRefused when no stack of that name exists. Read-only."""
    preflight.identity(aws, target)
    stack = stacks.describe(aws, target.stack_name)
    if stack is None:
        raise PreflightRefused(f"{target.stack_name} is not deployed",
                               f"no stack of that name in account {target.account_id}, region {target.region}",
                               f"deploy it with `{target.cli_name}`")
    return stack


def run(aws: Aws, target: Target, ui: Ui, *, as_json: bool = False) -> int:
    stack = deployed(aws, target)
    status = stack["StackStatus"]
    ui.step(f"{target.stack_name}: {status}")
    if stack.get("StackStatusReason"):
        ui.info(f"  reason: {stack['StackStatusReason']}")
    updated = stack.get("LastUpdatedTime") or stack.get("CreationTime")
    ui.info(f"  last change: {updated:%Y-%m-%d %H:%M:%S %Z}" if updated else "  last change: unknown")
    ui.info(f"  termination protection: {'on' if stack.get('EnableTerminationProtection') else 'off'}")
    nested = stacks.nested(aws, stack["StackId"])
    states = {}
    for label, physical in nested.items():
        child = stacks.describe(aws, physical)
        states[label] = child["StackStatus"] if child else "DELETE_COMPLETE"
        ui.info(f"  {label:<24} {states[label]}", progress.status_style(states[label]))
    if status not in stacks.OK_STATES:
        since = _last_operation_start(aws, stack["StackId"])
        watcher = stream.Watcher(aws, stack["StackId"], _descriptions(target), since)
        watcher.poll()
        for event in stream.root_causes(watcher.events):
            ui.info(f"  failed: {event.name} ({event.resource_type}): {event.reason}", "bold red")
        if status.endswith("_IN_PROGRESS"):
            ui.info(f"  in progress; run `adkit status {target.label}` again to follow it")
    health = None
    if target.kind == "environment":
        from generator.ops import health as probes
        from generator.ops import inventory

        try:
            branch = load_environment(target.label, target.config_file.parent).frontend.branch
        except ConfigError:
            branch = None   # the Amplify job is then not looked up; the live state still shows
        try:
            health = probes.collect(aws, inventory.read(aws, stack), {"branch": branch})
        except (ClientError, BotoCoreError) as exc:   # never hide the stack states because one read failed
            ui.warn(f"could not read the health of {target.stack_name}: {exc}")
        else:
            for text, style in probes.lines(health):
                ui.info(text, style)
    found = dict(sorted(stacks.outputs(stack).items()))
    platform = found.get("BackendPlatform")
    if platform:
        ui.info(f"  backend platform: {platform}")
    if as_json:
        ui.data(json.dumps({"StackName": target.stack_name, "StackStatus": status, "NestedStacks": states,
                            "Outputs": found, **({"Health": health} if health else {})}, indent=2, default=str))
    else:
        ui.table(found)
    return EXIT_OK
