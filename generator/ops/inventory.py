"""What a deployed environment holds: every resource of the root stack and its nested stacks, read once.

Other commands find log groups, services and alarms here by CloudFormation resource type and physical id,
instead of guessing names.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.deploy import stacks
from generator.deploy.session import Aws
from generator.deploy.templates import NESTED_STACK


@dataclass(frozen=True)
class Resource:
    stack_label: str        # '' for the root, else the nested stack's logical-id path (Backend, Data)
    logical_id: str
    resource_type: str
    physical_id: str


@dataclass(frozen=True)
class Inventory:
    stack: dict                 # DescribeStacks of the root stack
    resources: tuple[Resource, ...]

    @property
    def outputs(self) -> dict[str, str]:
        return stacks.outputs(self.stack)

    @property
    def parameters(self) -> dict[str, str]:
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in self.stack.get("Parameters") or []}

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.resource_type == resource_type and r.physical_id]


def read(aws: Aws, stack: dict) -> Inventory:
    """Resources of `stack` (a DescribeStacks entry) and of every nested stack below it (ListStackResources)."""
    found: list[Resource] = []
    queue = [("", stack["StackId"])]
    while queue:
        label, physical = queue.pop(0)
        for res in stacks.resources(aws, physical):
            if res.get("ResourceStatus") == "DELETE_COMPLETE":
                continue
            item = Resource(label, res["LogicalResourceId"], res.get("ResourceType", ""),
                            res.get("PhysicalResourceId") or "")
            found.append(item)
            if item.resource_type == NESTED_STACK and item.physical_id:
                queue.append((f"{label}/{item.logical_id}" if label else item.logical_id, item.physical_id))
    return Inventory(stack, tuple(found))
