"""The app contract as the rendered backend template states it: env var and secret names of the App Runner service.

`contract_names(env)` reads `templates/<env>/backend.yaml`: the `RuntimeEnvironmentVariables` and
`RuntimeEnvironmentSecrets` names of its `AWS::AppRunner::Service`. The rendered template is the only source:
if the backend stack stops rendering the service, the contract tests fail rather than fall back.
Besides the contract's names a template carries the application's own (`[backend.environment]`,
`backend.secrets` in the environment's config): `literal_values` holds the plain ones' values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"


SERVICE_TYPES = ("AWS::AppRunner::Service", "AWS::ECS::ExpressGatewayService")


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation short-form tags (!Ref, !Sub, !GetAtt ...) as plain data."""


def _any_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"Fn::{tag_suffix}" if tag_suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _any_tag)


@dataclass(frozen=True)
class ContractNames:
    variables: tuple[str, ...]
    secrets: tuple[str, ...]
    source: str  # the template path the names were read from
    literal_values: tuple[tuple[str, str], ...] = ()  # plain variables whose value is a literal string

    @property
    def all(self) -> tuple[str, ...]:
        return self.variables + self.secrets


def load_template(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # a SafeLoader subclass


def names_from_template(template: dict[str, Any]) -> ContractNames | None:
    """Names from the single backend service in a template (App Runner, or ECS Express Mode, whose PORT is set
    by the template rather than by the platform and so is left out here), or None if it has none."""
    services = [r for r in (template.get("Resources") or {}).values()
                if isinstance(r, dict) and r.get("Type") in SERVICE_TYPES]
    if not services:
        return None
    if len(services) > 1:
        raise AssertionError("more than one backend service in the backend template")
    properties = services[0]["Properties"]
    if services[0]["Type"] == "AWS::AppRunner::Service":
        image_config = properties["SourceConfiguration"]["ImageRepository"].get("ImageConfiguration", {})
        plain = image_config.get("RuntimeEnvironmentVariables", [])
        secrets = tuple(kv["Name"] for kv in image_config.get("RuntimeEnvironmentSecrets", []))
    else:
        container = properties["PrimaryContainer"]
        plain = [kv for kv in container.get("Environment", []) if kv["Name"] != "PORT"]
        secrets = tuple(kv["Name"] for kv in container.get("Secrets", []))
    variables = tuple(kv["Name"] for kv in plain)
    literal = tuple((kv["Name"], kv["Value"]) for kv in plain if isinstance(kv.get("Value"), str))
    return ContractNames(variables, secrets, "", literal)


def environments(templates: Path = TEMPLATES) -> list[str]:
    """Every environment rendered into `templates` (a folder with a backend.yaml), sorted."""
    return sorted(p.parent.name for p in templates.glob("*/backend.yaml"))


def default_environment(templates: Path = TEMPLATES) -> str:
    """`dev` when it is rendered, else the first environment: whatever the adopter calls them."""
    found = environments(templates)
    if not found:
        raise AssertionError(f"no */backend.yaml under {templates}: run `make render`")
    return "dev" if "dev" in found else found[0]


def contract_names(env: str, templates: Path = TEMPLATES) -> ContractNames:
    path = templates / env / "backend.yaml"
    if not path.exists():
        raise AssertionError(f"{path} missing: run `make render`")
    found = names_from_template(load_template(path))
    if found is None:
        raise AssertionError(f"{path} has no backend service ({', '.join(SERVICE_TYPES)}): the app contract "
                             "cannot be read")
    source = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    return ContractNames(found.variables, found.secrets, source, found.literal_values)
