"""Small helpers over troposphere: template creation, metadata, outputs, tags and deterministic YAML."""

from __future__ import annotations

import json

import yaml
from troposphere import AWSObject, Export, Output, Parameter, Tags, Template

from generator import contract

TEMPLATE_VERSION = "2010-09-09"
# Metadata key of the human description of a resource (namespaced, as copilot namespaces its own keys).
DESCRIPTION_KEY = "adkit:description"


def new_template(description: str) -> Template:
    template = Template(Description=description)
    template.set_version(TEMPLATE_VERSION)
    return template


def _set_metadata(resource: AWSObject, key: str, value) -> AWSObject:
    """Set one Metadata key of a resource, keeping the others."""
    resource.Metadata = {**(getattr(resource, "Metadata", {}) or {}), key: value}
    return resource


def _metadata(resource: AWSObject, key: str) -> dict:
    return dict((getattr(resource, "Metadata", {}) or {}).get(key, {}))


def _require_reason(what: str, reason: str) -> None:
    if not reason.strip():
        raise ValueError(f"suppressing {what} needs a written reason")


def describe(resource: AWSObject, text: str) -> AWSObject:
    """Human description, shown by the deploy progress view instead of the logical id."""
    return _set_metadata(resource, DESCRIPTION_KEY, text)


def skip_checkov(resource: AWSObject, check_id: str, reason: str) -> AWSObject:
    """Record a checkov suppression next to the resource, with the reason a reviewer reads.

    Raises ValueError when the reason is blank."""
    _require_reason(check_id, reason)
    checkov = _metadata(resource, "checkov")
    skips = [s for s in checkov.get("skip", []) if s["id"] != check_id]
    checkov["skip"] = sorted([*skips, {"id": check_id, "comment": reason}], key=lambda s: s["id"])
    return _set_metadata(resource, "checkov", checkov)


def skip_cfn_lint(resource: AWSObject, rule: str, reason: str) -> AWSObject:
    """Record a cfn-lint rule suppression on the resource, with its reason beside it.

    Raises ValueError when the reason is blank."""
    _require_reason(rule, reason)
    config = dict(_metadata(resource, "cfn-lint").get("config", {}))
    config["ignore_checks"] = sorted({*config.get("ignore_checks", []), rule})
    config["comment"] = "; ".join(filter(None, [config.get("comment"), f"{rule}: {reason}"]))
    return _set_metadata(resource, "cfn-lint", {"config": config})


def add_parameter(template: Template, name: str, description: str, type_: str = "String", **kwargs) -> Parameter:
    return template.add_parameter(Parameter(name, Type=type_, Description=description, **kwargs))


def add_image_tag_parameter(template: Template) -> Parameter:
    """The release parameter `ImageTag` (the backend image's commit SHA; `latest` is refused by its pattern)."""
    return add_parameter(
        template, contract.IMAGE_TAG_PARAMETER,
        "Backend image tag in the ECR repository (the commit SHA); `latest` is refused",
        AllowedPattern=contract.IMAGE_TAG_PATTERN, MinLength=1, MaxLength=128,
        ConstraintDescription="must be an immutable image tag such as a commit SHA, never 'latest'")


def add_output(template: Template, name: str, value, description: str, export: str | None = None) -> Output:
    output = Output(name, Value=value, Description=description)
    if export:
        output.Export = Export(export)
    return template.add_output(output)


def _wants_mapping(resource: AWSObject) -> bool:
    expected = resource.props["Tags"][0]
    candidates = expected if isinstance(expected, tuple) else (expected,)
    return dict in candidates


def apply_tags(template: Template, tags: dict[str, str]) -> Template:
    """Put the stable tags on every taggable resource that does not set its own."""
    for resource in template.resources.values():
        if "Tags" not in resource.props or "Tags" in resource.properties:
            continue
        resource.Tags = dict(tags) if _wants_mapping(resource) else Tags(**tags)
    return template


# libyaml's emitter (shipped in PyYAML's wheels) is ~10x faster than the pure-Python one; same output.
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):
    """Block-style YAML; long strings (policies, build specs) stay readable."""


def _str_presenter(dumper: yaml.SafeDumper, data: str):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_data(template: Template) -> dict:
    """Plain JSON-compatible data with sorted keys (the single source for YAML and tests)."""
    return json.loads(template.to_json(indent=None, sort_keys=True))


def dump_yaml(data: dict) -> str:
    """Deterministic YAML of template data in CloudFormation's long form (Fn::GetAtt etc.)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True,
                     width=4096)


def to_yaml(template: Template) -> str:
    """Deterministic YAML in CloudFormation's long form (Fn::GetAtt etc.), readable by every tool."""
    return dump_yaml(to_data(template))
