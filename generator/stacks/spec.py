"""The typed protocol every nested stack of an environment follows.

A stack module under `generator/stacks/` is a pure builder: `build(config) -> troposphere.Template`, with no
I/O and no knowledge of its siblings. It describes itself with one `StackSpec` (module constant `SPEC`, or a
function returning one when the composer must hand it facts about the others, as monitoring does). The
composer (`generator/compose.py`) chooses the specs from the config (`children(config)`), builds each one and
wires parameters to earlier stacks' outputs by name.

Adding a variant of a stack (a second backend platform) is one module whose spec keeps the stack's `name`, so
switching variants updates the nested stack in place; adding an optional stack is one module plus one line in
`children(config)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from troposphere import Template

from generator import naming
from generator.backend_metrics import BackendMetrics
from generator.config import EnvironmentConfig


@dataclass(frozen=True)
class StackSpec:
    """One nested stack of an environment.

    name: stack name inside the environment (`network`, `backend`, ...): the file `<name>.yaml` and the logical
        id of the nested-stack resource derive from it; variants of one stack share it.
    component: value of the `Component` tag (cost tracking); one of `naming.COMPONENTS`, two stacks may share one.
    description: human text shown by `adkit deploy` and in the template's Description.
    build: pure builder, environment config in, `Template` out.
    Raises ValueError when the component is not a known Component tag value.
    """

    name: str
    component: str
    description: str
    build: Callable[[EnvironmentConfig], Template]

    def __post_init__(self) -> None:
        if self.component not in naming.COMPONENTS:
            raise ValueError(f"stack {self.name!r}: component {self.component!r} is not one of {naming.COMPONENTS}")

    @property
    def logical_id(self) -> str:
        """Logical id of the nested-stack resource in the root: `frontend_branch` -> `FrontendBranch`."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def filename(self) -> str:
        return f"{self.name}.yaml"


@dataclass(frozen=True)
class MonitoringInputs:
    """What the monitoring stack needs to know about its siblings, handed over by the composer.

    components: Component tag values of the stacks this environment deploys (one budget each), sorted.
    nat_count: NAT gateways the network stack creates (one metric dimension each).
    backend_platform: the backend variant whose metrics the backend alarms read (`apprunner`, ...).
    backend_metrics: where that platform publishes them (defined by the backend variant's `metrics(config)`).
    """

    components: tuple[str, ...]
    nat_count: int
    backend_platform: str
    backend_metrics: BackendMetrics
