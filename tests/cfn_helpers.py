"""One-line assertions over rendered templates (like CDK's hasResourceProperties).

Templates are rendered in memory from the current code and config, once per test session, so the
invariant tests check what `make render` would write, independent of the committed files.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml

from generator import render
from generator.config import environment_names

ENVIRONMENTS = tuple(environment_names())


@functools.cache
def rendered() -> dict[str, str]:
    return render.render_all()


@functools.cache
def _parsed(path: str) -> dict:
    return yaml.safe_load(rendered()[path])


def template(path: str) -> dict:
    """Parsed template by path relative to templates/, e.g. 'dev/network.yaml' or 'bootstrap.yaml'."""
    return _parsed(path)


def stack(env: str, name: str) -> dict:
    return template(f"{env}/{name}.yaml")


def resources_of(tmpl: dict, type_: str) -> dict[str, dict]:
    return {lid: res for lid, res in tmpl.get("Resources", {}).items() if res["Type"] == type_}


def require(tmpl: dict, type_: str) -> dict[str, dict]:
    """resources_of, failing on a miss: a loop over nothing would assert nothing."""
    found = resources_of(tmpl, type_)
    assert found, f"no {type_} resources rendered"
    return found


def one(tmpl: dict, type_: str) -> tuple[str, dict]:
    found = resources_of(tmpl, type_)
    assert len(found) == 1, f"expected exactly one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


def props(resource: dict) -> dict[str, Any]:
    return resource.get("Properties", {})


def all_templates() -> dict[str, dict]:
    return {path: template(path) for path in rendered() if path.endswith(".yaml")}


def statements(policy_document: dict) -> list[dict]:
    found = policy_document.get("Statement", [])
    return found if isinstance(found, list) else [found]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]
