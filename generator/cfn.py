"""Small helpers over troposphere: template creation, metadata, outputs, tags and deterministic YAML."""

from __future__ import annotations

import json

import yaml
from troposphere import AWSObject, Export, Output, Parameter, Tags, Template

TEMPLATE_VERSION = "2010-09-09"


def new_template(description: str) -> Template:
    template = Template(Description=description)
    template.set_version(TEMPLATE_VERSION)
    return template


def describe(resource: AWSObject, text: str) -> AWSObject:
    """Human description, shown by the deploy progress view instead of the logical id."""
    metadata = dict(getattr(resource, "Metadata", {}) or {})
    metadata["Description"] = text
    resource.Metadata = metadata
    return resource


def skip_checkov(resource: AWSObject, check_id: str, reason: str) -> AWSObject:
    """Record a checkov suppression next to the resource, with the reason a reviewer reads."""
    if not reason.strip():
        raise ValueError(f"suppressing {check_id} needs a written reason")
    metadata = dict(getattr(resource, "Metadata", {}) or {})
    checkov = dict(metadata.get("checkov", {}))
    skips = [s for s in checkov.get("skip", []) if s["id"] != check_id]
    skips.append({"id": check_id, "comment": reason})
    checkov["skip"] = sorted(skips, key=lambda s: s["id"])
    metadata["checkov"] = checkov
    resource.Metadata = metadata
    return resource


def skip_cfn_lint(resource: AWSObject, rule: str, reason: str) -> AWSObject:
    """Record a cfn-lint rule suppression on the resource, with its reason beside it."""
    if not reason.strip():
        raise ValueError(f"suppressing {rule} needs a written reason")
    metadata = dict(getattr(resource, "Metadata", {}) or {})
    config = dict(metadata.get("cfn-lint", {}).get("config", {}))
    config["ignore_checks"] = sorted({*config.get("ignore_checks", []), rule})
    config["comment"] = "; ".join(filter(None, [config.get("comment"), f"{rule}: {reason}"]))
    metadata["cfn-lint"] = {"config": config}
    resource.Metadata = metadata
    return resource


def add_parameter(template: Template, name: str, description: str, type_: str = "String", **kwargs) -> Parameter:
    return template.add_parameter(Parameter(name, Type=type_, Description=description, **kwargs))


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


def to_yaml(template: Template) -> str:
    """Deterministic YAML in CloudFormation's long form (Fn::GetAtt etc.), readable by every tool."""
    return dump_yaml(to_data(template))


def dump_yaml(data: dict) -> str:
    """`to_yaml` of a template already turned into data (`to_data`)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True, width=4096)
