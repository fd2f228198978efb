"""The deploy sequence (and `plan`, which stops after showing the change set), as `run` reads:

load -> preflight (credentials, account/region, bootstrap, stack state, another run) -> a dead first create is
reported, and deleted only after confirmation (its own step) -> package -> change set with nested stacks ->
"no changes" is success -> show -> confirm -> execute and watch -> on failure the first root causes, after the
rollback -> prod guard rails -> outputs. `_change_set_scope` deletes the change set whenever it is not executed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from generator.deploy import changeset, package, preflight, progress, protect, stacks, stream, templates
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


def parameter_changes(existing: dict | None, params: list[dict], declared: dict[str, dict] | None = None) -> list[Line]:
    """`Name: old → new` for each parameter whose value the change set changes (`(none)` on a first create);
    parameters kept with UsePreviousValue are unchanged. NoEcho values (declared so, or **** from AWS) stay hidden."""
    before = {p["ParameterKey"]: p.get("ParameterValue") for p in (existing or {}).get("Parameters") or []}
    lines = []
    for param in params:
        name, new = param["ParameterKey"], param.get("ParameterValue")
        if param.get("UsePreviousValue") or before.get(name) == new:
            continue
        old = before.get(name)
        if old == "****" or str((declared or {}).get(name, {}).get("NoEcho", "")).lower() == "true":
            old, new = "(hidden)", "(hidden)"
        lines.append(Line(f"    {name}: {old if old is not None else '(none)'} → {new}", "bold cyan"))
    return [Line("Parameter changes:", "bold"), *lines] if lines else []


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
    changeset.delete(aws, ref, delete_empty_stack=True, poll=poll)
    if ref.change_type == "CREATE":
        stacks.wait_settled(aws, ref.stack_id, poll)
        ui.info("Deleted the change set and the empty stack created for it (REVIEW_IN_PROGRESS).")
    else:
        ui.info("Deleted the change set; the stack is unchanged.")


def next_steps(target: Target, status: str, stuck: list[stream.Event]) -> str:
    """What the operator does after a failed operation ended in `status` (stuck: resources that failed
    during the rollback). UPDATE_ROLLBACK_FAILED and ROLLBACK_FAILED need a hand; the others do not."""
    where = f"--stack-name {target.stack_name} --region {target.region}"
    if status == "ROLLBACK_COMPLETE":
        return (f"fix the cause, `make render`, and deploy again; the next `{target.cli_name}` shows this root "
                "cause again and, once you confirm, deletes the rolled-back stack before creating it again")
    if status == "UPDATE_ROLLBACK_COMPLETE":
        return "fix the cause, `make render`, and deploy again; the stack is back on its previous version"
    if status == "UPDATE_ROLLBACK_FAILED":
        skip = " ".join(e.where.replace("/", ".") for e in stuck) or "<NestedStack.LogicalId ...>"
        return ("the rollback itself failed, so the stack is stuck and CloudFormation refuses every update. "
                "Fix what stopped the resources listed above from rolling back (read their reasons), then, on the "
                f"ROOT stack (never a nested one): `aws cloudformation continue-update-rollback {where}`. Only if a "
                "resource cannot be restored, skip it (it is left as it is, check it by hand): add "
                f"`--resources-to-skip {skip}`. Wait for UPDATE_ROLLBACK_COMPLETE (`adkit status "
                f"{target.label}`), then fix the original cause and deploy again")
    if status == "ROLLBACK_FAILED":
        return ("the failed first create could not be rolled back; such a stack can only be deleted: "
                f"`aws cloudformation delete-stack {where}` (add `--retain-resources <LogicalId ...>` for resources "
                "that refuse deletion, then remove them by hand), then fix the cause and deploy again")
    if status in ("CREATE_FAILED", "UPDATE_FAILED"):
        return (f"rollback was disabled for this operation: roll back with `aws cloudformation rollback-stack "
                f"{where}`, or fix the cause and deploy again")
    if status == "DELETE_COMPLETE":
        return "the stack is gone; fix the cause and deploy again (a first create starts from scratch)"
    return f"check `adkit status {target.label}` and the CloudFormation console before deploying again"


def _print_root_causes(ui: Ui, heading: str, causes: list[stream.Event]) -> None:
    """`heading` as an error, then each root-cause event: where, what, type and status, and its reason.
    Prints nothing for no causes."""
    if causes:
        ui.error(heading)
    for event in causes:
        what = f"{event.description} " if event.description else ""
        ui.info(f"  {event.where}: {what}({event.resource_type}) {event.status}", "bold red")
        ui.info(f"      {event.reason or 'no reason given'}", "red")


def _failure(target: Target, final: dict | None, watcher: stream.Watcher, ui: Ui) -> DeployFailed:
    status = final["StackStatus"] if final else "DELETE_COMPLETE"
    causes = stream.root_causes(watcher.events)
    _print_root_causes(ui, "root cause (earliest failures):", causes)
    stuck = stream.rollback_failures(watcher.events) if status.endswith("ROLLBACK_FAILED") else []
    if stuck:
        ui.error("these resources failed to roll back:")
        for event in stuck:
            ui.info(f"  {event.where} ({event.resource_type}) {event.status}: {event.reason or 'no reason given'}",
                    "bold red")
    first = causes[0] if causes else None
    why = (f"the first failure was {first.where} ({first.status}, reason above)" if first
           else f"the stack ended in {status} and its events name no failed resource")
    return DeployFailed(f"deploy of {target.stack_name} failed, ended in {status}", why,
                        next_steps(target, status, stuck))


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


@dataclass(frozen=True)
class _Preflight:
    """What the checks before any write found: bootstrap outputs, the stack (if any), whether it is dead,
    and the change set's parameters."""

    boot: dict
    existing: dict | None
    dead: bool
    params: list[dict]


def run(aws: Aws, target: Target, ui: Ui, *, image_tag: str | None = None, yes: bool = False,
        plan_only: bool = False) -> int:
    """Deploy (or plan) one target. Returns an exit code; raises DeployError subclasses for the others."""
    poll = poll_seconds()
    loaded, declared = _load(target, image_tag)
    ui.step(f"{'Planning' if plan_only else 'Deploying'} {target.stack_name} to account {target.account_id}, "
            f"region {target.region}{aws.endpoint_note}")
    checked = _preflight(aws, target, ui, declared, image_tag)
    existing, unchanged = checked.existing, "nothing was changed"
    if checked.dead:
        _report_failed_create(aws, target, existing, ui, _descriptions(loaded)[0])
        if plan_only:   # plan is read-only: the dead stack and the events that explain it stay
            ui.info(f"Plan: `{target.cli_name}` would first delete {target.stack_name} (after asking), then create "
                    "it from scratch; nothing was changed.", "bold")
            return EXIT_OK
        _delete_failed_create(aws, target, existing, ui, poll, yes)
        existing = None
        unchanged = f"the dead stack {target.stack_name} was deleted as confirmed; nothing else was changed"

    packaged = _package(aws, ui, target, loaded, checked.boot)
    change_type = "UPDATE" if existing else "CREATE"
    tag_note = f", image {image_tag}" if image_tag else ""
    ref = changeset.create(aws, stack_name=target.stack_name, change_type=change_type, body=packaged.body,
                           url=packaged.url, parameters=checked.params, tags=target.tags,
                           nested=bool(loaded.children),
                           description=f"adkit {'plan' if plan_only else 'deploy'} {target.label}{tag_note}")
    if ref is None:
        return _no_changes(aws, target, ui, target.stack_name, loaded, plan_only)
    with _change_set_scope(aws, ui, ref, poll, unchanged) as scope:
        described = _wait_for_change_set(aws, target, ref, poll, scope)
        if changeset.has_no_changes(described):
            changeset.delete(aws, ref, delete_empty_stack=False, poll=poll)
            scope.settled()
            return _no_changes(aws, target, ui, ref.stack_id, loaded, plan_only, note=" (change set deleted)")
        per_stack = _show(aws, ui, target, ref, loaded, existing, checked.params, declared, plan_only)
        if plan_only:
            return EXIT_OK   # the scope deletes the change set
        if not _confirmed(ui, target, yes):
            raise Declined("change set not executed", f"the confirmation was declined; {unchanged}",
                           "" if target.production or yes else f"to run without a prompt: {target.cli_name} --yes")
        scope.settled()   # from here on the change set is executed, or _start deletes it
    return _execute(aws, target, ui, ref, loaded, per_stack, poll)


def _load(target: Target, image_tag: str | None) -> tuple[templates.Loaded, dict[str, dict]]:
    """The rendered templates and the root's declared parameters; refuses an image tag the root does not take."""
    loaded = templates.load(target.template)
    declared = templates.parameter_names(loaded.body)
    if image_tag is not None:
        check_image_tag(image_tag)
        if IMAGE_TAG_PARAMETER not in declared:
            raise UsageError(f"--image-tag given for {target.stack_name}",
                             f"{target.template} has no {IMAGE_TAG_PARAMETER} parameter", "drop --image-tag")
    return loaded, declared


def _preflight(aws: Aws, target: Target, ui: Ui, declared: dict[str, dict], image_tag: str | None) -> _Preflight:
    """Every check before any write: credentials and account, cost tags, bootstrap, Git token, stack state,
    another run in progress, the image."""
    preflight.identity(aws, target)
    if target.kind == "environment":
        preflight.cost_allocation_tags(aws, target, ui)
    boot = preflight.bootstrap_outputs(aws, target) if target.needs_bootstrap else {}
    if target.kind == "environment":
        preflight.git_token_placeholder(aws, target, ui, boot)
    existing, dead = preflight.stack_state(aws, target)
    if existing is not None:
        preflight.other_run(aws, target, existing)
    params = parameters(declared, target, image_tag, None if dead else existing)
    if image_tag and boot.get("EcrRepositoryUri"):
        preflight.image_present(aws, boot["EcrRepositoryUri"], image_tag)
    return _Preflight(boot, existing, dead, params)


def _package(aws: Aws, ui: Ui, target: Target, loaded: templates.Loaded, boot: dict) -> package.Packaged:
    """Upload the nested templates under content hashes (unchanged ones are reused)."""
    packaged = package.package(aws, loaded, boot.get("ArtifactBucketName"), f"templates/{target.label}")
    if packaged.uploaded or packaged.reused:
        ui.info(f"Packaged nested templates: {len(packaged.uploaded)} uploaded, {len(packaged.reused)} unchanged "
                f"(s3://{boot['ArtifactBucketName']}/templates/{target.label}/)")
    return packaged


def _no_changes(aws: Aws, target: Target, ui: Ui, stack: str, loaded: templates.Loaded, plan_only: bool,
                note: str = "") -> int:
    """"No changes" is success: say so, put back guard rails a previous run could not finish, print outputs."""
    ui.info(f"No changes: {target.stack_name} already matches the templates and parameters{note}.", "bold green")
    if not plan_only:
        _protect(aws, target, ui, stack, loaded)
    _print_outputs(aws, ui, stack)
    return EXIT_OK


class _Scope:
    """Whether the change set still needs deleting when its `_change_set_scope` ends."""

    def __init__(self) -> None:
        self.open = True

    def settled(self) -> None:
        """The change set was executed, deleted, or is left on purpose: the scope deletes nothing."""
        self.open = False


@contextlib.contextmanager
def _change_set_scope(aws: Aws, ui: Ui, ref: changeset.Ref, poll: float, unchanged: str):
    """Deletes the change set (and the empty stack of a first create) whenever the block ends without settling
    it: plan, declined, a failure, Ctrl-C, any error. Nothing is left half-done."""
    scope = _Scope()
    try:
        yield scope
    except KeyboardInterrupt:
        if scope.open:
            _discard(aws, ui, ref, poll)
        raise Interrupted("interrupted before execution", f"the change set was deleted; {unchanged}", "") from None
    except DeployError:
        if scope.open:
            _discard(aws, ui, ref, poll)
        raise
    except Exception:
        if scope.open:
            with contextlib.suppress(Exception):   # never leave a change set (or an empty stack) behind
                _discard(aws, ui, ref, poll)
        raise
    if scope.open:
        _discard(aws, ui, ref, poll)


def _wait_for_change_set(aws: Aws, target: Target, ref: changeset.Ref, poll: float, scope: _Scope) -> dict:
    """The created change set; refuses one CloudFormation could not create or is still creating."""
    described = changeset.wait(aws, ref, poll)
    if changeset.has_no_changes(described):
        return described
    if described["Status"] in changeset.CREATING:
        scope.settled()   # it cannot be deleted while CloudFormation creates it: the operator deletes it later
        raise DeployFailed(f"CloudFormation is still creating the change set for {target.stack_name} after "
                           "30 minutes", "this command stopped waiting; nothing was executed",
                           f"delete it when it is done: aws cloudformation delete-change-set --change-set-name "
                           f"{ref.id} --region {target.region}; then retry")
    if described["Status"] != "CREATE_COMPLETE":
        raise DeployFailed(f"CloudFormation could not create a change set for {target.stack_name}",
                           changeset.failure_reason(aws, described),
                           "fix what it names in the templates (`make render`) and retry")
    return described


def _show(aws: Aws, ui: Ui, target: Target, ref: changeset.Ref, loaded: templates.Loaded, existing: dict | None,
          params: list[dict], declared: dict[str, dict], plan_only: bool) -> dict[str, dict[str, str]]:
    """Print the change set per nested stack (parameter changes, replacements and stateful removals flagged).
    Returns the per-stack descriptions the progress view uses."""
    per_stack, titles = _descriptions(loaded)
    tree = changeset.tree(aws, ref.id, per_stack)
    if existing and any(c.action == "Remove" and c.resource_type == templates.NESTED_STACK
                        for s in tree.walk() for c in s.changes):
        changeset.removed_nested_contents(aws, tree, stacks.nested(aws, existing["StackId"]))
    header = f"Change set {ref.id.split('/')[1] if '/' in ref.id else ref.id} ({ref.change_type.lower()}):"
    ui.lines([Line(header, "bold"), *parameter_changes(existing, params, declared),
              *render(tree, target.stack_name, titles)], data=plan_only)
    return per_stack


def _start(aws: Aws, target: Target, ui: Ui, ref: changeset.Ref, poll: float):
    """Check the change set is still executable (the confirmation may have taken a while), execute it.
    Returns the (timestamp, ids) of the events before it. A Ctrl-C or a refusal before CloudFormation took
    the change set deletes it, so nothing is left half-done."""
    cfn = aws.client("cloudformation")
    try:
        blocked = changeset.not_executable(cfn.describe_change_set(ChangeSetName=ref.id))
        if blocked:
            _discard(aws, ui, ref, poll)
            raise DeployFailed(f"change set for {target.stack_name} not executed", blocked,
                               f"run `{target.cli_name}` again to build a fresh change set")
        before = stream.latest_event(aws, ref.stack_id)
        cfn.execute_change_set(ChangeSetName=ref.id)
        return before
    except KeyboardInterrupt:
        described = cfn.describe_change_set(ChangeSetName=ref.id)
        if described.get("ExecutionStatus") != "AVAILABLE":   # CloudFormation took it: it is running
            raise _interrupted(aws, target, ref.stack_id) from None
        _discard(aws, ui, ref, poll)
        raise Interrupted("interrupted before execution", "the change set was deleted; nothing was changed",
                          "") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        with contextlib.suppress(Exception):
            _discard(aws, ui, ref, poll)
        raise DeployFailed(f"CloudFormation refused to execute the change set for {target.stack_name}",
                           f"{error.get('Code')}: {error.get('Message')}",
                           f"nothing was changed; check `adkit status {target.label}`, then run "
                           f"`{target.cli_name}` again") from None


def _execute(aws: Aws, target: Target, ui: Ui, ref: changeset.Ref, loaded: templates.Loaded,
             per_stack: dict[str, dict[str, str]], poll: float) -> int:
    """Execute the change set, watch it to the end, then guard rails and outputs."""
    since, seen = _start(aws, target, ui, ref, poll)
    ui.step(f"Executing {ref.change_type.lower()} of {target.stack_name}")
    watcher = stream.Watcher(aws, ref.stack_id, per_stack, since, seen)
    try:
        final = stream.watch(aws, watcher, progress.view_for(ui, target.stack_name), poll)
    except KeyboardInterrupt:
        raise _interrupted(aws, target, ref.stack_id) from None
    except stream.WatchTimeout as exc:
        raise DeployFailed(f"stopped watching {target.stack_name}: it is {exc}",
                           "CloudFormation carries on without this command; nothing was cancelled",
                           f"follow it with `adkit status {target.label}`; raise ADKIT_TIMEOUT_MINUTES for a longer "
                           "wait next time") from None
    except (ClientError, BotoCoreError) as exc:
        raise DeployFailed(f"lost track of {target.stack_name} while it deploys", f"reading its state failed: {exc}",
                           f"CloudFormation carries on without this command; follow it with `adkit status "
                           f"{target.label}`") from None
    if final is None or final["StackStatus"] not in stacks.OK_STATES:
        raise _failure(target, final, watcher, ui)
    ui.info(f"{target.stack_name}: {final['StackStatus']}", "bold green")
    _protect(aws, target, ui, ref.stack_id, loaded)
    _print_outputs(aws, ui, ref.stack_id)
    return EXIT_OK


def _protect(aws: Aws, target: Target, ui: Ui, stack: str, loaded: templates.Loaded) -> None:
    """Guard rails of a protected target, after every successful (or unchanged) deploy."""
    if not target.protected:
        return
    again = f"run `{target.cli_name}` again (with no changes it only re-applies them)"
    try:
        guarded = protect.apply(aws, stack, loaded)
    except KeyboardInterrupt:
        raise Interrupted(f"{target.stack_name} is deployed, but its guard rails are not all in place",
                          "interrupted while setting termination protection and stack policies", again) from None
    except (ClientError, BotoCoreError) as exc:
        raise DeployFailed(f"{target.stack_name} is deployed, but its guard rails are not all in place",
                           f"setting termination protection or a stack policy failed: {exc}",
                           "check your role may call cloudformation:UpdateTerminationProtection and "
                           f"SetStackPolicy, then {again}") from None
    ui.info("Protected: termination protection on; stack policies deny replacing or deleting databases, "
            f"buckets and repositories (set on: {', '.join(guarded) or 'none, no stack holds such resources'}).")


def _report_failed_create(aws: Aws, target: Target, stack: dict, ui: Ui,
                          descriptions: dict[str, dict[str, str]] | None = None) -> None:
    """Say why the stack is dead: the root causes of its failed first create (read-only)."""
    status = stack["StackStatus"]
    if status == "REVIEW_IN_PROGRESS":
        created = stack.get("CreationTime")
        when = f"created {created:%Y-%m-%d %H:%M %Z}, " if created else ""
        ui.warn(f"{target.stack_name} is REVIEW_IN_PROGRESS: an earlier first create was never executed "
                f"({when}nothing in it). A stack in this state cannot be updated, only deleted and created again.")
        return
    ui.warn(f"{target.stack_name} is {status}: its first create failed and rolled back. A stack in this state "
            "cannot be updated, only deleted and created again.")
    causes = preflight.failed_create(aws, stack, descriptions)
    if causes:
        _print_root_causes(ui, "root cause of the failed create (earliest failures):", causes)
    elif stack.get("StackStatusReason"):
        ui.info(f"  reason: {stack['StackStatusReason']}")


def _delete_failed_create(aws: Aws, target: Target, stack: dict, ui: Ui, poll: float, yes: bool) -> None:
    """Delete a dead first-create stack only after confirmation (typed for production; --yes elsewhere), so a new
    create can start. Declining raises Declined with nothing changed."""
    ui.step(f"Deleting the dead stack {target.stack_name}")
    question = (f"Delete {target.stack_name} ({stack['StackStatus']}) and its events? Resources it retained are "
                "kept; the deploy then creates it again.")
    if target.production:
        confirmed = ui.confirm_typed(f"{question} It is a PRODUCTION stack: --yes does not apply here.",
                                     target.label)
    else:
        confirmed = yes or ui.confirm(question)
    if not confirmed:
        raise Declined(f"{target.stack_name} not deleted", "the confirmation was declined; nothing was changed",
                       f"read its events first if you like (`adkit status {target.label}`), then run "
                       f"`{target.cli_name}` again and confirm")
    preflight.delete_dead(aws, target, stack, ui, poll)
    ui.info(f"Deleted the dead stack {target.stack_name}{' (--yes)' if yes and not target.production else ''}; "
            "resources it retained, if any, are kept.")


def _confirmed(ui: Ui, target: Target, yes: bool) -> bool:
    if target.production:
        return ui.confirm_typed(f"{target.stack_name} is a PRODUCTION stack: --yes does not apply here.",
                                target.label)
    if yes:
        return True
    return ui.confirm(f"Execute this change set on {target.stack_name}?")
