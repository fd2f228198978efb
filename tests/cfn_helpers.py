"""One-line assertions over rendered templates (like CDK's hasResourceProperties).

Templates are rendered in memory from the current code and config, once per test session, so the
invariant tests check what `make render` would write, independent of the committed files.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml

from generator import render
from generator.config import (
    BACKEND_PLATFORMS,
    EnvironmentConfig,
    environment_names,
    load_environment,
    parse_environment,
)

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


# ---- cases over backend platforms ---------------------------------------------------------------

def _built(platform: str) -> EnvironmentConfig:
    """The first environment of config/ on `platform`, keeping the backend settings both platforms share."""
    data = load_environment(ENVIRONMENTS[0]).model_dump(exclude_none=True)
    shared = {key: value for key, value in data["backend"].items()
              if key in ("min_instances", "max_instances", "port", "health_check_path", "waf_rate_limit_per_5_min")}
    data["name"] = "pt" + platform.replace("-", "")[:8]
    data["backend"] = {**shared, "platform": platform}
    return parse_environment(data)


def _platform_configs() -> dict[str, EnvironmentConfig]:
    """Every environment of config/, plus one built config per platform that none of them uses, so a
    property test over these cases holds on every backend platform whatever config/ holds."""
    configs = {env: load_environment(env) for env in ENVIRONMENTS}
    for platform in BACKEND_PLATFORMS:
        if platform not in {c.backend.platform for c in configs.values()}:
            config = _built(platform)
            configs[config.name] = config
    return configs


CASE_CONFIGS = _platform_configs()
CASES = tuple(CASE_CONFIGS)
CASES_BY_PLATFORM = {p: tuple(c for c in CASES if CASE_CONFIGS[c].backend.platform == p) for p in BACKEND_PLATFORMS}


@functools.cache
def _case_files(case: str) -> dict[str, str]:
    return render.render_environment(CASE_CONFIGS[case])


@functools.cache
def case_stack(case: str, name: str) -> dict:
    """A stack of a case: the committed-equivalent render for environments in config/, else rendered here."""
    if case in ENVIRONMENTS:
        return stack(case, name)
    return yaml.safe_load(_case_files(case)[f"{name}.yaml"])
