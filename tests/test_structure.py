"""The structure the composer relies on: stack modules are independent pure builders, chosen by config."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from generator import compose, naming
from generator.config import environment_names, load_environment
from generator.stacks.spec import StackSpec

STACKS_DIR = Path(compose.__file__).parent / "stacks"
STACK_MODULES = sorted(p for p in STACKS_DIR.glob("*.py") if not p.name.startswith("_") and p.stem != "spec")


def _imports(path: Path) -> list[tuple[str, ast.AST]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(f"{node.module}.{alias.name}", node) for alias in node.names]
            found.append((node.module, node))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
    return found


@pytest.mark.parametrize("path", STACK_MODULES, ids=lambda p: p.stem)
def test_no_stack_module_imports_the_composer_or_another_stack(path):
    stack_names = {p.stem for p in STACK_MODULES} - {path.stem}
    for name, _ in _imports(path):
        assert not name.startswith("generator.compose"), f"{path.name} imports the composer"
        parts = name.split(".")
        if parts[:2] == ["generator", "stacks"] and len(parts) > 2:
            assert parts[2] not in stack_names, f"{path.name} imports the {parts[2]} stack ({name})"


@pytest.mark.parametrize("path", [*STACK_MODULES, Path(compose.__file__)], ids=lambda p: p.stem)
def test_no_function_level_imports(path):
    tree = ast.parse(path.read_text())
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        nested = [n for n in ast.walk(function) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not nested, f"{path.name}:{function.name} imports inside a function (line {nested[0].lineno})"


@pytest.mark.parametrize("env", environment_names())
def test_children_are_typed_specs_with_unique_names_and_known_components(env):
    specs = compose.children(load_environment(env))
    assert all(isinstance(spec, StackSpec) for spec in specs)
    names = [spec.name for spec in specs]
    assert len(names) == len(set(names)), names
    assert {spec.component for spec in specs} <= set(naming.COMPONENTS)
    assert names[-1] == "monitoring"  # told about every other stack, so built last


def test_a_spec_refuses_an_unknown_component():
    with pytest.raises(ValueError, match="not one of"):
        StackSpec(name="cache", component="cache", description="x", build=lambda config: None)


def test_monitoring_is_told_the_deployed_components_and_nat_count():
    config = load_environment(environment_names()[0])
    spec = compose.children(config)[-1]
    inputs = spec.build.keywords["inputs"]
    assert inputs.components == tuple(sorted({s.component for s in compose.children(config)}))
    assert inputs.nat_count == config.network.nat_gateway_count
