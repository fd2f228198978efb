"""Test-only patch of moto's CloudFormation, applied inside the local server (it runs in the test process).

moto 5.2 executes change sets synchronously, emits no resource events, answers a failing resource with
an HTTP 500 instead of a rollback, forgets outputs after a CREATE change set, has no nested change
sets, recreates nested stacks on update and lacks UpdateTerminationProtection. The deploy command is
written for real CloudFormation; this module closes exactly those gaps so the command can be tested
end to end. It changes moto only, never the code under test.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from moto.cloudformation import parsing, responses
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend, Event, Stack, cloudformation_backends
from moto.cloudformation.utils import generate_changeset_id, generate_stack_id, get_stack_from_s3_url
from moto.core.responses import ActionResult

NESTED = "AWS::CloudFormation::Stack"
# Properties whose change replaces the resource (a few, for the types the fixtures use).
CREATE_ONLY = {
    "AWS::S3::Bucket": {"BucketName"},
    "AWS::SQS::Queue": {"QueueName", "FifoQueue"},
    "AWS::SNS::Topic": {"TopicName", "FifoTopic"},
    "AWS::SSM::Parameter": {"Name"},
    "AWS::Logs::LogGroup": {"LogGroupName"},
    "AWS::ECR::Repository": {"RepositoryName"},
}
SETTINGS = {"resource_seconds": 0.0}   # pause per resource, so a test can interrupt a running deploy
_NESTED_CHANGE_SETS: dict[str, list[str]] = {}


class ResourceFailed(BaseException):  # not an Exception: moto's retry loops let it through
    def __init__(self, stack_id: str, logical_id: str, reason: str) -> None:
        super().__init__(reason)
        self.stack_id, self.logical_id, self.reason = stack_id, logical_id, reason


def _backend(account_id: str, region: str) -> CloudFormationBackend:
    return cloudformation_backends[account_id][region]


_DELETING: dict[str, Stack] = {}   # moto removes a stack from its backend before deleting its resources


def _owner(resources_map: Any) -> Stack | None:
    backend = _backend(resources_map._account_id, resources_map._region_name)
    return backend.stacks.get(resources_map.stack_id) or _DELETING.get(resources_map.stack_id)


def _event(stack: Stack | None, logical_id: str, physical_id: str, rtype: str, status: str,
           reason: str | None = None) -> None:
    if stack is not None:
        stack.events.append(Event(stack.stack_id, stack.name, logical_id, physical_id or "", rtype, status,
                                  reason, None))


def _physical(resource: Any) -> str:
    if isinstance(resource, Stack):
        return resource.stack_id
    return str(getattr(resource, "physical_resource_id", "") or "")


# ---- resource events and failures --------------------------------------------------------------

def _snapshot(stack: Stack) -> tuple:
    rm = stack.resource_map
    return (stack.template, dict(rm._resource_json_map), rm._template, dict(rm.input_parameters),
            set(rm._parsed_resources), dict(stack.parameters or {}))


def _restore(stack: Stack, snap: tuple) -> None:
    """Roll an update back: delete what it added, restore the previous template and parameters."""
    template, json_map, tmpl, params, parsed, stack_params = snap
    rm = stack.resource_map
    for lid in set(rm._parsed_resources) - parsed:
        resource = rm._parsed_resources.pop(lid)
        if lid in rm._resource_json_map and not isinstance(resource, str) and resource is not None:
            with contextlib.suppress(Exception):   # best effort, like a rollback that leaves one behind
                rm._delete_resource(resource, rm._resource_json_map[lid])
    stack.template = template
    stack._parse_template()
    rm._resource_json_map, rm._template, rm.input_parameters = json_map, tmpl, params
    stack.parameters = stack_params
    stack.output_map = stack._create_output_map()


def _roll_back_create(stack: Stack, failed: str) -> None:
    stack._add_stack_event("ROLLBACK_IN_PROGRESS", f"The following resource(s) failed to create: [{failed}]. "
                           "Rollback requested by user.")
    with contextlib.suppress(Exception):
        stack.resource_map.delete()
    stack.resource_map._resource_json_map = {}       # nothing left to create lazily
    stack.template_dict = {"Resources": {}}
    stack.output_map = stack._create_output_map()
    stack._add_stack_event("ROLLBACK_COMPLETE")
    stack.status = "ROLLBACK_COMPLETE"


def _roll_back_update(stack: Stack, snap: tuple, failed: str) -> None:
    stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", f"The following resource(s) failed to update: [{failed}].")
    _restore(stack, snap)
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
    stack.status = "UPDATE_ROLLBACK_COMPLETE"


_original_create = parsing.parse_and_create_resource
_original_update = parsing.parse_and_update_resource
_original_delete = parsing.ResourceMap._delete_resource


def _create_with_events(logical_id: str, resource_json: dict, resources_map: Any, account_id: str,
                        region_name: str) -> Any:
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        return None
    stack = _owner(resources_map)
    rtype = resource_json["Type"]
    _event(stack, logical_id, "", rtype, "CREATE_IN_PROGRESS")
    time.sleep(SETTINGS["resource_seconds"])
    try:
        resource = _original_create(logical_id, resource_json, resources_map, account_id, region_name)
    except ResourceFailed as inner:   # a nested stack failed: it rolls back, its parent resource fails
        nested = _backend(account_id, region_name).stacks.get(inner.stack_id)
        if nested is not None and inner.stack_id != resources_map.stack_id:
            _roll_back_create(nested, inner.logical_id)
        if inner.stack_id == resources_map.stack_id:
            raise
        reason = (f"Embedded stack {inner.stack_id} was not successfully created: The following resource(s) "
                  f"failed to create: [{inner.logical_id}]. ")
        _event(stack, logical_id, nested.name if nested else "", rtype, "CREATE_FAILED", reason)
        raise ResourceFailed(resources_map.stack_id, logical_id, reason) from None
    except Exception as exc:
        reason = f"Resource handler returned message: \"{exc}\""
        _event(stack, logical_id, "", rtype, "CREATE_FAILED", reason)
        raise ResourceFailed(resources_map.stack_id, logical_id, reason) from exc
    _event(stack, logical_id, _physical(resource) if resource is not None else "", rtype, "CREATE_COMPLETE")
    return resource


def _update_with_events(logical_id: str, resource_json: dict, resources_map: Any, account_id: str,
                        region_name: str) -> Any:
    stack = _owner(resources_map)
    rtype = resource_json["Type"]
    before = resources_map._parsed_resources.get(logical_id)
    _event(stack, logical_id, _physical(before), rtype, "UPDATE_IN_PROGRESS")
    time.sleep(SETTINGS["resource_seconds"])
    try:
        resource = _original_update(logical_id, resource_json, resources_map, account_id, region_name)
    except ResourceFailed as inner:
        if inner.stack_id == resources_map.stack_id:
            raise
        reason = (f"Embedded stack {inner.stack_id} was not successfully updated. Currently in "
                  f"UPDATE_ROLLBACK_IN_PROGRESS with reason: The following resource(s) failed to create: "
                  f"[{inner.logical_id}].")
        _event(stack, logical_id, _physical(before), rtype, "UPDATE_FAILED", reason)
        raise ResourceFailed(resources_map.stack_id, logical_id, reason) from None
    except Exception as exc:
        reason = f"Resource handler returned message: \"{exc}\""
        _event(stack, logical_id, _physical(before), rtype, "UPDATE_FAILED", reason)
        raise ResourceFailed(resources_map.stack_id, logical_id, reason) from exc
    _event(stack, logical_id, _physical(resource), rtype, "UPDATE_COMPLETE")
    return resource


def _delete_with_events(self: Any, parsed_resource: Any, resource_json: dict) -> None:
    stack = _owner(self)
    lid = getattr(parsed_resource, "logical_resource_id", "") or ""
    rtype = resource_json.get("Type", "")
    _event(stack, lid, _physical(parsed_resource), rtype, "DELETE_IN_PROGRESS")
    _original_delete(self, parsed_resource, resource_json)
    _event(stack, lid, _physical(parsed_resource), rtype, "DELETE_COMPLETE")


_original_stack_delete = Stack.delete


def _stack_delete(self: Stack) -> None:
    _DELETING[self.stack_id] = self
    try:
        _original_stack_delete(self)
    finally:
        _DELETING.pop(self.stack_id, None)


_original_diff = parsing.ResourceMap.build_resource_diff


def _diff_ignoring_empty_properties(self: Any, other_template: dict, parameters: dict | None = None) -> dict:
    """moto adds `Properties: {}` to the resources it parses; an absent Properties is the same thing."""
    for resource in other_template.get("Resources", {}).values():
        resource.setdefault("Properties", {})
    return _original_diff(self, other_template, parameters)


# ---- nested stacks: in-place update, outputs through GetAtt ------------------------------------

def _update_nested_in_place(cls: Any, original_resource: Stack, new_resource_name: str,
                            cloudformation_json: dict, account_id: str, region_name: str) -> Stack:
    props = cloudformation_json["Properties"]
    body = get_stack_from_s3_url(props["TemplateURL"], account_id=account_id, partition="aws")
    snap = _snapshot(original_resource)
    try:
        original_resource.update(body, parameters=dict(props.get("Parameters") or {}))
    except ResourceFailed as failure:
        _roll_back_update(original_resource, snap, failure.logical_id)
        raise ResourceFailed(original_resource.stack_id, failure.logical_id, failure.reason) from None
    return original_resource


def _nested_output(self: Stack, attribute: str) -> Any:
    if attribute.startswith("Outputs."):
        for output in self.outputs or []:
            if output["OutputKey"] == attribute.split(".", 1)[1]:
                return output["OutputValue"]
    raise NotImplementedError(attribute)


# ---- change sets: execution in the background, nested change sets, replacement flags ------------

def _find_change_set(backend: CloudFormationBackend, name: str) -> ChangeSet:
    if name in backend.change_sets:
        return backend.change_sets[name]
    for change_set in backend.change_sets.values():
        if change_set.change_set_name == name:
            return change_set
    raise ValidationError(name, message=f"ChangeSet [{name}] does not exist")


def _drop_change_set(backend: CloudFormationBackend, change_set_id: str) -> None:
    backend.change_sets.pop(change_set_id, None)
    for nested in _NESTED_CHANGE_SETS.pop(change_set_id, []):
        _drop_change_set(backend, nested)


def _execute(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
    change_set = _find_change_set(self, change_set_name)
    if change_set.execution_status != "AVAILABLE":
        raise ValidationError(message=f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current "
                              f"execution status of [{change_set.execution_status}]")
    stack = self.stacks[change_set.stack_id]
    kind = change_set.change_set_type
    snap = _snapshot(stack)
    stack.status = f"{kind}_IN_PROGRESS"
    stack._add_stack_event(f"{kind}_IN_PROGRESS", "User Initiated")
    change_set.execution_status = "EXECUTE_IN_PROGRESS"
    for other in [cs for cs in self.change_sets.values() if cs.stack_id == stack.stack_id]:
        _drop_change_set(self, other.change_set_id)    # AWS deletes the stack's change sets on execution

    def work() -> None:
        try:
            change_set.apply()
        except (Exception, ResourceFailed) as exc:
            failure = exc if isinstance(exc, ResourceFailed) else ResourceFailed(stack.stack_id, "?", str(exc))
            if kind == "CREATE":
                _roll_back_create(stack, failure.logical_id)
            else:
                _roll_back_update(stack, snap, failure.logical_id)
            return
        stack.template = change_set.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.parameters = dict(change_set.parameters)
        if change_set.tags:
            stack.tags = dict(change_set.tags)
        stack.output_map = stack._create_output_map()
        stack._add_stack_event(f"{kind}_COMPLETE")
        stack.status = f"{kind}_COMPLETE"

    threading.Thread(target=work, daemon=True).start()


def _nested_parameters(raw: dict, parent: ChangeSet, previous: dict) -> dict:
    """Nested stack parameters as far as a change set can know them (a Ref to a root parameter)."""
    result = {}
    for key, value in (raw or {}).items():
        if isinstance(value, str):
            result[key] = value
        elif isinstance(value, dict) and "Ref" in value and value["Ref"] in parent.parameters:
            result[key] = parent.parameters[value["Ref"]]
        elif key in previous:
            result[key] = previous[key]
    return result


def _enrich(backend: CloudFormationBackend, change_set: ChangeSet) -> None:
    rm = change_set.stack.resource_map
    old = rm._resource_json_map
    new = change_set.template_dict.get("Resources", {})
    listed = {c.logical_resource_id for c in change_set.changes}
    if change_set.change_set_type == "UPDATE":
        for lid in rm.build_resource_diff(change_set.template_dict, change_set.parameters)["Modify"]:
            if lid not in listed:    # unchanged template, changed parameter
                change_set.changes.append(Change("Modify", lid, new[lid]["Type"]))
    for change in change_set.changes:
        lid = change.logical_resource_id
        if change.action == "Modify":
            before = (old.get(lid) or {}).get("Properties") or {}
            after = (new.get(lid) or {}).get("Properties") or {}
            names = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            recreate = CREATE_ONLY.get(change.resource_type, set())
            change.replacement = "True" if set(names) & recreate else "False"
            change.details = [{"Target": {"Attribute": "Properties", "Name": n,
                                          "RequiresRecreation": "Always" if n in recreate else "Never"},
                               "Evaluation": "Static", "ChangeSource": "DirectModification"} for n in names]
            change.physical_resource_id = _physical(rm._parsed_resources.get(lid)) or None
        if change.resource_type == NESTED and change.action in ("Add", "Modify"):
            change.change_set_id = _nested_change_set(backend, change_set, lid, change.action).change_set_id


def _nested_change_set(backend: CloudFormationBackend, parent: ChangeSet, lid: str, action: str) -> ChangeSet:
    props = parent.template_dict["Resources"][lid]["Properties"]
    body = get_stack_from_s3_url(props["TemplateURL"], account_id=backend.account_id, partition="aws")
    existing = parent.stack.resource_map._parsed_resources.get(lid) if action == "Modify" else None
    if isinstance(existing, Stack):
        stack, previous = existing, dict(existing.resource_map.input_parameters)
    else:
        name = f"{parent.stack_name}-{lid}"
        stack = Stack(stack_id=generate_stack_id(name, backend.region_name, backend.account_id), name=name,
                      template={}, parameters={}, account_id=backend.account_id, region_name=backend.region_name)
        previous = {}
    name = f"{parent.change_set_name}-{lid}"[:128]
    nested = ChangeSet(change_set_type="UPDATE" if isinstance(existing, Stack) else "CREATE",
                       change_set_id=generate_changeset_id(name, backend.region_name, backend.account_id),
                       change_set_name=name, stack=stack, template=body,
                       parameters=_nested_parameters(props.get("Parameters"), parent, previous),
                       description=f"nested change set for {lid}")
    nested.status, nested.execution_status = "CREATE_COMPLETE", "AVAILABLE"
    backend.change_sets[nested.change_set_id] = nested
    _NESTED_CHANGE_SETS.setdefault(parent.change_set_id, []).append(nested.change_set_id)
    _enrich(backend, nested)
    return nested


_original_create_change_set = CloudFormationBackend.create_change_set
_original_delete_change_set = CloudFormationBackend.delete_change_set
_original_delete_stack = CloudFormationBackend.delete_stack


def _create_change_set(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> tuple[str, str]:
    change_set_id, stack_id = _original_create_change_set(self, *args, **kwargs)
    change_set = self.change_sets[change_set_id]
    if change_set.status == "CREATE_COMPLETE":
        _enrich(self, change_set)
    return change_set_id, stack_id


def _delete_change_set(self: CloudFormationBackend, change_set_name: str) -> None:
    _drop_change_set(self, _find_change_set(self, change_set_name).change_set_id)


def _delete_stack(self: CloudFormationBackend, name_or_stack_id: str) -> None:
    for stack in self.stacks.values():
        if name_or_stack_id in (stack.name, stack.stack_id) and stack.enable_termination_protection:
            raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection "
                                  "is enabled")
    _original_delete_stack(self, name_or_stack_id)


def _update_termination_protection(self: Any) -> ActionResult:
    stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
    stack.enable_termination_protection = self._get_bool_param("EnableTerminationProtection")
    return ActionResult({"StackId": stack.stack_id})


def _patches() -> list[tuple[Any, str, Any]]:
    return [
        (parsing, "parse_and_create_resource", _create_with_events),
        (parsing, "parse_and_update_resource", _update_with_events),
        (parsing.ResourceMap, "_delete_resource", _delete_with_events),
        (parsing.ResourceMap, "build_resource_diff", _diff_ignoring_empty_properties),
        (Stack, "delete", _stack_delete),
        (Stack, "update_from_cloudformation_json", classmethod(_update_nested_in_place)),
        (Stack, "get_cfn_attribute", _nested_output),
        (CloudFormationBackend, "execute_change_set", _execute),
        (CloudFormationBackend, "create_change_set", _create_change_set),
        (CloudFormationBackend, "delete_change_set", _delete_change_set),
        (CloudFormationBackend, "delete_stack", _delete_stack),
        # AWS answers an identical submission with a FAILED change set, not a ValidationError
        (responses.CloudFormationResponse, "_validate_different_update", lambda self, *a, **k: None),
        (responses.CloudFormationResponse, "update_termination_protection", _update_termination_protection),
    ]


_saved: list[tuple[Any, str, Any]] = []


def apply() -> None:
    """Patch moto in this process (idempotent). moto's server threads see the change at once."""
    if _saved:
        return
    for owner, name, replacement in _patches():
        _saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, replacement)


def remove() -> None:
    """Undo `apply`, so tests elsewhere in the same process get moto as shipped."""
    while _saved:
        owner, name, original = _saved.pop()
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


_MISSING = object()
