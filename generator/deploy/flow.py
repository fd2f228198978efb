"""The deploy sequence (and `plan`, which stops after showing the change set).

preflight (credentials, account/region, bootstrap, stack state) -> package -> change set with nested
stacks -> "no changes" is success -> show -> confirm -> execute and watch -> on failure the first root
causes, after the rollback -> prod guard rails -> outputs.
"""

from __future__ import annotations

import contextlib

from generator.deploy import changeset, package, preflight, progress, protect, stacks, templates
from generator.deploy.errors import EXIT_OK, Declined, DeployError, DeployFailed, Interrupted, UsageError
from generator.deploy.render_changes import render
from generator.deploy.session import Aws, poll_seconds
from generator.deploy.targets import IMAGE_TAG_PARAMETER, Target, check_image_tag
from generator.deploy.ui import Line, Ui


def parameters(declared: dict[str, dict], target: Target, image_tag: str | None,
               existing: dict | None) -> list[dict]:
    """CreateChangeSet parameters: config values, the image tag, else the previous value or the default."""
    previous = {p["ParameterKey"] for p in (existing or {}).get("Parameters") or []}
    result = []
    for name, spec in declared.items():
        if name == IMAGE_TAG_PARAMETER and image_tag:
            result.append({"ParameterKey": name, "ParameterValue": image_tag})
        elif name in target.parameters:
            result.append({"ParameterKey": name, "ParameterValue": target.parameters[name]})
        elif name in previous and (name == IMAGE_TAG_PARAMETER or "Default" not in spec):
            result.append({"ParameterKey": name, "UsePreviousValue": True})
        elif "Default" not in spec:
            if name == IMAGE_TAG_PARAMETER:
                raise UsageError(f"{target.stack_name} does not exist yet, so there is no image tag to reuse",
                                 "the first deploy of an environment must say which backend image to run",
                                 f"pass --image-tag <commit sha>: adkit deploy {target.label} --image-tag abc123")
            raise UsageError(f"template parameter {name} has no value",
                             f"{target.template} declares it without a default and the TemplateConfiguration "
                             "file does not set it", "run `make render` to regenerate the configuration file")
    return result


def _descriptions(loaded: templates.Loaded) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Per stack label: logical id -> description; and nested stack label -> its description (title)."""
    per_stack = {label: templates.descriptions(item.body) for label, item in loaded.walk()}
    titles = {}
    for label, item in loaded.walk():
        for lid in item.children:
            child = f"{label}/{lid}" if label else lid
            if per_stack[label].get(lid):
                titles[child] = per_stack[label][lid]
    return per_stack, titles


def _print_outputs(aws: Aws, ui: Ui, stack_id: str) -> None:
    found = stacks.outputs(stacks.describe(aws, stack_id))
    if found:
        ui.info("Outputs:", "bold")
        ui.table(dict(sorted(found.items())))


def _discard(aws: Aws, ui: Ui, ref: changeset.Ref, poll: float) -> None:
    changeset.delete(aws, ref, delete_empty_stack=True)
    if ref.change_type == "CREATE":
        stacks.wait_settled(aws, ref.stack_id, poll)
        ui.info("Deleted the change set and the empty stack created for it (REVIEW_IN_PROGRESS).")
    else:
        ui.info("Deleted the change set; the stack is unchanged.")


def _failure(target: Target, final: dict | None, watcher: progress.Watcher, ui: Ui) -> DeployFailed:
    status = final["StackStatus"] if final else "DELETE_COMPLETE"
    causes = progress.root_causes(watcher.events)
    if causes:
        ui.error("root cause (earliest failures):")
        for event in causes:
            what = f"{event.description} " if event.description else ""
            ui.info(f"  {event.where}: {what}({event.resource_type}) {event.status}", "bold red")
            ui.info(f"      {event.reason or 'no reason given'}", "red")
    nxt = (f"the next `adkit deploy {target.label}` deletes the rolled-back stack before creating it again"
           if status == "ROLLBACK_COMPLETE" else "the stack is back on its previous version")
    first = causes[0] if causes else None
    why = (f"the first failure was {first.where} ({first.status}, reason above)" if first
           else f"the stack ended in {status} and its events name no failed resource")
    return DeployFailed(f"deploy of {target.stack_name} failed, ended in {status}", why,
                        f"fix the cause, `make render`, and deploy again; {nxt}")


def _interrupted(aws: Aws, target: Target, stack_id: str) -> Interrupted:
    stack = stacks.describe(aws, stack_id)
    status = stack["StackStatus"] if stack else "unknown"
    region = f"--region {target.region}"
    todo = (f"follow it with `adkit status {target.label}`; "
            f"to stop an update (it rolls back to the previous version): `aws cloudformation cancel-update-stack "
            f"--stack-name {target.stack_name} {region}`; a create cannot be cancelled: if it fails it rolls back "
            f"and the next deploy deletes the dead stack first")
    return Interrupted(f"interrupted while {target.stack_name} is {status}",
                       "CloudFormation carries on without this command; nothing was cancelled", todo)


def run(aws: Aws, target: Target, ui: Ui, *, image_tag: str | None = None, yes: bool = False,
        plan_only: bool = False) -> int:
    """Deploy (or plan) one target. Returns an exit code; raises DeployError subclasses for the others."""
    poll = poll_seconds()
    loaded = templates.load(target.template)
    declared = templates.parameter_names(loaded.body)
    if image_tag is not None:
        check_image_tag(image_tag)
        if IMAGE_TAG_PARAMETER not in declared:
            raise UsageError(f"--image-tag given for {target.stack_name}",
                             f"{target.template} has no {IMAGE_TAG_PARAMETER} parameter", "drop --image-tag")
    verb = "Planning" if plan_only else "Deploying"
    ui.step(f"{verb} {target.stack_name} to account {target.account_id}, region {target.region}{aws.endpoint_note}")

    # ---- preflight: every check before any write ---------------------------------------------
    preflight.identity(aws, target)
    boot = preflight.bootstrap_outputs(aws, target) if target.needs_bootstrap else {}
    existing, dead = preflight.stack_state(aws, target)
    params = parameters(declared, target, image_tag, None if dead else existing)
    if image_tag and boot.get("EcrRepositoryUri"):
        preflight.image_present(aws, boot["EcrRepositoryUri"], image_tag)
    if dead:
        preflight.delete_dead(aws, target, existing, ui, poll)
        existing = None

    # ---- package and change set ---------------------------------------------------------------
    packaged = package.package(aws, loaded, boot.get("ArtifactBucketName"), f"templates/{target.label}")
    if packaged.uploaded or packaged.reused:
        ui.info(f"Packaged nested templates: {len(packaged.uploaded)} uploaded, {len(packaged.reused)} unchanged "
                f"(s3://{boot['ArtifactBucketName']}/templates/{target.label}/)")
    change_type = "UPDATE" if existing else "CREATE"
    tag_note = f", image {image_tag}" if image_tag else ""
    ref = changeset.create(aws, stack_name=target.stack_name, change_type=change_type, body=packaged.body,
                           url=packaged.url, parameters=params, tags=target.tags, nested=bool(loaded.children),
                           description=f"adkit {'plan' if plan_only else 'deploy'} {target.label}{tag_note}")
    if ref is None:
        ui.info(f"No changes: {target.stack_name} already matches the templates and parameters.", "bold green")
        _print_outputs(aws, ui, target.stack_name)
        return EXIT_OK
    try:
        described = changeset.wait(aws, ref, poll)
        if changeset.has_no_changes(described):
            changeset.delete(aws, ref, delete_empty_stack=False)
            ui.info(f"No changes: {target.stack_name} already matches the templates and parameters "
                    "(change set deleted).", "bold green")
            _print_outputs(aws, ui, ref.stack_id)
            return EXIT_OK
        if described["Status"] != "CREATE_COMPLETE":
            _discard(aws, ui, ref, poll)
            raise DeployFailed(f"CloudFormation could not create a change set for {target.stack_name}",
                               described.get("StatusReason") or described["Status"],
                               "fix what it names in the templates (`make render`) and retry")
        per_stack, titles = _descriptions(loaded)
        tree = changeset.tree(aws, ref.id, per_stack)
        if existing and any(c.action == "Remove" and c.resource_type == templates.NESTED_STACK
                            for s in tree.walk() for c in s.changes):
            changeset.removed_nested_contents(aws, tree, stacks.nested(aws, existing["StackId"]))
        header = f"Change set {ref.id.split('/')[1] if '/' in ref.id else ref.id} ({change_type.lower()}):"
        ui.lines([Line(header, "bold"), *render(tree, target.stack_name, titles)], data=plan_only)
        if plan_only:
            _discard(aws, ui, ref, poll)
            return EXIT_OK
        if not _confirmed(ui, target, yes):
            _discard(aws, ui, ref, poll)
            raise Declined("change set not executed", "the confirmation was declined; nothing was changed",
                           "" if target.production or yes else f"to run without a prompt: {target.cli_name} --yes")
    except KeyboardInterrupt:
        _discard(aws, ui, ref, poll)
        raise Interrupted("interrupted before execution", "the change set was deleted; nothing was changed",
                          "") from None
    except DeployError:
        raise   # already cleaned up
    except Exception:
        with contextlib.suppress(Exception):   # never leave a change set (or an empty stack) behind
            _discard(aws, ui, ref, poll)
        raise

    return _execute(aws, target, ui, ref, loaded, per_stack, poll)


def _execute(aws: Aws, target: Target, ui: Ui, ref: changeset.Ref, loaded: templates.Loaded,
             per_stack: dict[str, dict[str, str]], poll: float) -> int:
    """Execute the change set, watch it to the end, then guard rails and outputs."""
    since, seen = progress.latest_event(aws, ref.stack_id)
    aws.client("cloudformation").execute_change_set(ChangeSetName=ref.id)
    ui.step(f"Executing {ref.change_type.lower()} of {target.stack_name}")
    watcher = progress.Watcher(aws, ref.stack_id, per_stack, since, seen)
    try:
        final = progress.watch(aws, watcher, progress.view_for(ui, target.stack_name), poll)
    except KeyboardInterrupt:
        raise _interrupted(aws, target, ref.stack_id) from None
    if final is None or final["StackStatus"] not in stacks.OK_STATES:
        raise _failure(target, final, watcher, ui)
    ui.info(f"{target.stack_name}: {final['StackStatus']}", "bold green")
    if target.protected:
        guarded = protect.apply(aws, ref.stack_id, loaded)
        ui.info("Protected: termination protection on; stack policies deny replacing or deleting databases, "
                f"buckets and repositories (set on: {', '.join(guarded) or 'none, no stack holds such resources'}).")
    _print_outputs(aws, ui, ref.stack_id)
    return EXIT_OK


def _confirmed(ui: Ui, target: Target, yes: bool) -> bool:
    if target.production:
        return ui.confirm_typed(f"{target.stack_name} is a PRODUCTION stack: --yes does not apply here.",
                                target.label)
    if yes:
        return True
    return ui.confirm(f"Execute this change set on {target.stack_name}?")
