"""`adkit destroy ENV`: delete a non-production environment, saying first which data survives and why.

Refused for production. Resources whose DeletionPolicy is Retain stay (buckets, log groups, keys)
and the database leaves a final snapshot (Snapshot), so a mistaken destroy never loses data.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.deploy import preflight, progress, stacks, stream, templates
from generator.deploy.errors import EXIT_OK, Declined, DeployFailed, Interrupted, PreflightRefused
from generator.deploy.session import Aws, poll_seconds
from generator.deploy.targets import Target
from generator.deploy.ui import Ui

KEEPING_POLICIES = {"Retain": "kept", "RetainExceptOnCreate": "kept", "Snapshot": "final snapshot taken"}


@dataclass(frozen=True)
class Kept:
    where: str
    resource_type: str
    policy: str
    description: str
    physical_id: str = ""     # bucket name, key id, log group name, vault name, cluster id (its final snapshot)


def _deployed_template(aws: Aws, stack_id: str) -> dict:
    body = aws.client("cloudformation").get_template(StackName=stack_id, TemplateStage="Original")["TemplateBody"]
    return body if isinstance(body, dict) else templates.parse(body, stack_id)


def deployed_templates(aws: Aws, stack_id: str) -> dict[str, dict]:
    """Stack label -> deployed template, for the stack and every nested stack below it."""
    return {label: _deployed_template(aws, physical)
            for label, physical in {"": stack_id, **stacks.nested(aws, stack_id)}.items()}


def kept_resources(deployed: dict[str, dict], physical: dict[str, dict[str, str]] | None = None) -> list[Kept]:
    """Resources that deletion retains or snapshots (their DeletionPolicy); `physical` maps stack label ->
    logical id -> physical id (from ListStackResources), so the operator can find what stays."""
    result = []
    for label, body in deployed.items():
        texts = templates.descriptions(body)
        for lid, res in body.get("Resources", {}).items():
            policy = res.get("DeletionPolicy")
            if policy in KEEPING_POLICIES:
                result.append(Kept(f"{label}/{lid}" if label else lid, res.get("Type", ""), policy, texts.get(lid, ""),
                                   (physical or {}).get(label, {}).get(lid, "")))
    return result


def physical_ids(aws: Aws, stack_id: str) -> dict[str, dict[str, str]]:
    """Stack label -> logical id -> physical id, for the stack and every nested stack below it."""
    return {label: {r["LogicalResourceId"]: r.get("PhysicalResourceId") or "" for r in stacks.resources(aws, phys)}
            for label, phys in {"": stack_id, **stacks.nested(aws, stack_id)}.items()}


def run(aws: Aws, target: Target, ui: Ui, *, yes: bool = False) -> int:
    if target.production:
        raise PreflightRefused(
            f"destroy {target.label} refused",
            f"{target.config_file} sets production = true, and production holds the only live copy of "
            "customer data",
            "to retire it on purpose: set production = false in a reviewed change and deploy, then destroy; "
            "or delete it in the console after turning termination protection off")
    poll = poll_seconds()
    preflight.identity(aws, target)
    stack = stacks.describe(aws, target.stack_name)
    if stack is None:
        ui.info(f"{target.stack_name} does not exist in account {target.account_id}, region {target.region}: "
                "nothing to destroy.")
        return EXIT_OK
    if stack["StackStatus"].endswith("_IN_PROGRESS") and stack["StackStatus"] != "REVIEW_IN_PROGRESS":
        raise PreflightRefused(f"{target.stack_name} is busy ({stack['StackStatus']})",
                               "CloudFormation runs one operation per stack at a time",
                               f"wait for it (`adkit status {target.label}`), then retry")
    preflight.other_run(aws, target, stack)   # never delete the stack under another operator's pending change set
    if stack.get("EnableTerminationProtection"):
        raise PreflightRefused(
            f"{target.stack_name} has termination protection on", "CloudFormation refuses to delete it",
            f"if you mean it: aws cloudformation update-termination-protection --no-enable-termination-protection "
            f"--stack-name {target.stack_name} --region {target.region}; then retry")

    deployed = deployed_templates(aws, stack["StackId"])
    kept = kept_resources(deployed, physical_ids(aws, stack["StackId"]))
    ui.step(f"Destroying {target.stack_name} (account {target.account_id}, region {target.region})")
    if kept:
        ui.info("These are NOT deleted, so that a mistaken destroy never loses data (they keep costing money "
                "until you delete them by hand; buckets must be emptied first):", "bold")
        from generator.ops.cost import keeping_cost

        for item in kept:
            what = f"{item.description} " if item.description else ""
            name = f"\n      name: {item.physical_id}" if item.physical_id else ""
            ui.info(f"  {KEEPING_POLICIES[item.policy]:<21} {item.where}: {what}({item.resource_type}){name}"
                    f"\n      costs to keep: {keeping_cost(item.resource_type, target.region)}")
    else:
        ui.info("Nothing in this stack is retained: everything in it is deleted.", "bold")
    if not yes and not ui.confirm_typed(f"Delete {target.stack_name} and everything above not listed as kept?",
                                        target.label):
        raise Declined(f"{target.stack_name} not deleted", "the confirmation was declined", "")

    since, seen = stream.latest_event(aws, stack["StackId"])
    aws.client("cloudformation").delete_stack(StackName=stack["StackId"])
    texts = {label: templates.descriptions(body) for label, body in deployed.items()}
    watcher = stream.Watcher(aws, stack["StackId"], texts, since, seen)
    try:
        final = stream.watch(aws, watcher, progress.view_for(ui, target.stack_name), poll)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped watching; {target.stack_name} keeps deleting",
                           "CloudFormation carries on without this command",
                           f"follow it with `adkit status {target.label}`") from None
    except stream.WatchTimeout as exc:
        raise DeployFailed(f"stopped watching the deletion of {target.stack_name}: it is {exc}",
                           "CloudFormation carries on without this command",
                           f"follow it with `adkit status {target.label}`") from None
    if final is not None and final["StackStatus"] != "DELETE_COMPLETE":
        for event in stream.root_causes(watcher.events):
            ui.info(f"  {event.where} ({event.resource_type}) {event.status}: {event.reason}", "bold red")
        raise DeployFailed(f"destroy of {target.stack_name} failed, ended in {final['StackStatus']}",
                           final.get("StackStatusReason") or "see the failures above",
                           "remove the blocker (often a non-empty bucket), then run destroy again")
    ui.info(f"{target.stack_name}: DELETE_COMPLETE", "bold green")
    return EXIT_OK
