"""Source of the inline Lambda handlers of custom resources.

Each module is plain Python that is linted and unit-tested here and embedded as `ZipFile` code at render
time (read with `source(name)`). Inline code gets CloudFormation's `cfnresponse` module; the handlers
import it inside `handler` so the rest of the module can be tested without it.
"""

from __future__ import annotations

from importlib import resources


def source(module: str) -> str:
    """Text of `generator/stacks/handlers/<module>.py`, as embedded in the template."""
    return resources.files(__name__).joinpath(f"{module}.py").read_text(encoding="utf-8")
