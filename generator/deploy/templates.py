"""Reading rendered templates: parse YAML/JSON with CloudFormation tags, find nested stacks, descriptions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from cfn_tools import load_yaml

from generator.cfn import DESCRIPTION_KEY
from generator.config import read_text
from generator.deploy.errors import UsageError

NESTED_STACK = "AWS::CloudFormation::Stack"


def parse(text: str, source: Path | str = "<template>") -> dict:
    """Template text (YAML short or long form, or JSON) to plain dicts and lists."""
    try:
        loaded = load_yaml(text)
    except Exception as exc:  # yaml raises several unrelated types
        raise UsageError(f"{source}: not a readable template", str(exc), "run `make render` to regenerate it") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("Resources"), dict):
        raise UsageError(f"{source}: not a CloudFormation template", "it has no Resources section",
                         "run `make render` to regenerate it")
    return json.loads(json.dumps(loaded))


def is_local(url: object) -> bool:
    """A TemplateURL that is a relative file path (as `aws cloudformation package` expects)."""
    return isinstance(url, str) and not urlparse(url).scheme


def nested_stacks(template: dict) -> dict[str, dict]:
    """Logical id -> resource, for every AWS::CloudFormation::Stack resource."""
    return {lid: res for lid, res in template.get("Resources", {}).items() if res.get("Type") == NESTED_STACK}


def descriptions(template: dict) -> dict[str, str]:
    """Logical id -> Metadata `adkit:description` (the human text progress shows instead of the id)."""
    result = {}
    for lid, res in template.get("Resources", {}).items():
        text = (res.get("Metadata") or {}).get(DESCRIPTION_KEY)
        if isinstance(text, str) and text.strip():
            result[lid] = text.strip()
    return result


def resource_types(template: dict) -> dict[str, str]:
    return {lid: res.get("Type", "") for lid, res in template.get("Resources", {}).items()}


@dataclass
class Loaded:
    """One template file and its nested children (recursively), as read from disk."""

    path: Path
    text: str
    body: dict
    children: dict[str, Loaded] = field(default_factory=dict)   # logical id -> child

    def walk(self, prefix: str = ""):
        """(label, Loaded) for this template and every descendant; labels are logical-id paths."""
        yield prefix, self
        for lid, child in self.children.items():
            yield from child.walk(f"{prefix}/{lid}" if prefix else lid)


def load(path: Path) -> Loaded:
    text = read_text(path)   # ConfigError naming the byte, not a traceback, for a file that is not UTF-8
    body = parse(text, path)
    loaded = Loaded(path=path, text=text, body=body)
    for lid, res in nested_stacks(body).items():
        url = (res.get("Properties") or {}).get("TemplateURL")
        if is_local(url):
            child_path = (path.parent / url).resolve()
            if not child_path.is_file():
                raise UsageError(f"{path}: nested stack {lid} points at {url}", "that file does not exist",
                                 "run `make render` to regenerate the environment's templates")
            loaded.children[lid] = load(child_path)
    return loaded


def parameter_names(template: dict) -> dict[str, dict]:
    return dict(template.get("Parameters") or {})
