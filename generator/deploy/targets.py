"""What a command acts on: one environment's root stack, or an account-level stack.

Pure resolution from the config files and the rendered templates; no AWS calls. Deploying needs
account_id and region pinned in the config file, so a wrong profile can never touch another account.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from generator import contract, layout, naming
from generator.config import ConfigError, load_account, load_environment, read_text
from generator.deploy import guards
from generator.deploy.errors import UsageError
from generator.naming import NamingError

ROOT_FILE = layout.ROOT_FILE
ROOT_CONFIGURATION = layout.ROOT_CONFIGURATION_FILE
ACCOUNT_TEMPLATES = {"bootstrap": layout.BOOTSTRAP_FILE, "pipeline": layout.PIPELINE_FILE}
IMAGE_TAG_PARAMETER = contract.IMAGE_TAG_PARAMETER
IMAGE_TAG_PATTERN = re.compile(contract.IMAGE_TAG_PATTERN)


@dataclass(frozen=True)
class Target:
    label: str                      # "dev", "prod", "bootstrap", "pipeline"
    kind: str                       # "environment" or "account"
    app_name: str
    stack_name: str
    account_id: str
    region: str
    config_file: Path
    template: Path
    production: bool = False        # prod: always confirm by typing the name; destroy refused
    protected: bool = False         # termination protection and a stack policy after each deploy
    parameters: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def needs_bootstrap(self) -> bool:
        return self.label != "bootstrap"

    @property
    def cli_name(self) -> str:
        """How the operator names this target on the command line."""
        return f"adkit {self.label}" if self.kind == "account" else f"adkit deploy {self.label}"


def _pinned(value: str | None, key: str, config_file: Path, example: str) -> str:
    if not value:
        raise UsageError(
            f"{config_file}: {key} is not set",
            "deploying needs the account and region pinned in the file, so credentials for another "
            "account or region are refused instead of used",
            f'add `{key} = "{example}"` to {config_file}')
    return value


def _configuration(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Parameters and Tags from a CodePipeline TemplateConfiguration file (absent file: none)."""
    if not path.is_file():
        return {}, {}
    try:
        data = json.loads(read_text(path))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{path}: not valid JSON", str(exc) or "nested too deeply",
                         "run `make render` to regenerate it") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k) or {}, dict) for k in ("Parameters", "Tags")):
        raise UsageError(f"{path}: not a TemplateConfiguration file",
                         'expected {"Parameters": {...}, "Tags": {...}}', "run `make render` to regenerate it")
    params = {str(k): str(v) for k, v in (data.get("Parameters") or {}).items()}
    tags = {str(k): str(v) for k, v in (data.get("Tags") or {}).items()}
    return params, tags


def _template(path: Path) -> Path:
    if not path.is_file():
        raise UsageError(f"{path}: template not found", "the templates are rendered from config, not written "
                         "by hand", "run `make render` (or `adkit render`), then retry")
    return path


def _guard(label: str, kind: str, config_dir: Path, templates_dir: Path, config_file: Path) -> None:
    """Refuse example values left in the config and templates that are not a fresh render of it."""
    found = guards.problems(config_dir, templates_dir, label, kind, config_file)
    if found:
        raise UsageError(f"refusing to deploy {label}", "\n  " + "\n  ".join(found),
                         "fix what is named above (your own values instead of examples), run `make render`, "
                         "review and commit the templates")


def problems(name: str, config_dir: Path, templates_dir: Path) -> list[str]:
    """Every reason `name` (an environment, or `bootstrap`/`pipeline`) is not deployable as configured, each on
    one line naming the file and the field: config errors, account_id/region not pinned, example values,
    templates not freshly rendered. No AWS calls; nothing raised."""
    env_file = config_dir / "environments" / f"{name}.toml"
    kind = "account" if name in ACCOUNT_TEMPLATES and not env_file.is_file() else "environment"
    config_file = config_dir / "account.toml" if kind == "account" else env_file
    try:
        config = load_account(config_file) if kind == "account" else load_environment(name, env_file.parent)
    except ConfigError as exc:
        return [str(exc)]
    found = [f"{config_file}: {key}: not set; deploying needs it pinned, so credentials for another account or "
             "region are refused instead of used" for key in ("account_id", "region") if not getattr(config, key)]
    try:
        found += guards.problems(config_dir, templates_dir, name, kind, config_file)
    except (ConfigError, NamingError) as exc:
        found.append(str(exc))
    return found


def environment(name: str, config_dir: Path, templates_dir: Path, *, deploying: bool = True) -> Target:
    """Target for one environment; `deploying` adds the checks that only matter before a change."""
    env_dir = config_dir / "environments"
    config = load_environment(name, env_dir)
    config_file = env_dir / f"{name}.toml"
    account_id = _pinned(config.account_id, "account_id", config_file, "123456789012")
    region = _pinned(config.region, "region", config_file, "eu-west-1")
    domain = config.frontend.custom_domain
    if deploying and domain is not None and domain.is_example:
        raise UsageError(
            f"{config_file}: frontend.custom_domain.name is the example domain {domain.name!r}",
            "Amplify would try to verify a domain nobody here owns and the deploy would hang on it",
            f"set frontend.custom_domain.name in {config_file} to your domain, or delete the "
            "[frontend.custom_domain] table to use the Amplify default domain, then `make render`")
    folder = templates_dir / name
    template = _template(folder / ROOT_FILE) if deploying else folder / ROOT_FILE
    if deploying:
        _guard(name, "environment", config_dir, templates_dir, config_file)
    params, tags = _configuration(folder / ROOT_CONFIGURATION)
    return Target(label=name, kind="environment", app_name=config.app_name,
                  stack_name=naming.root_stack_name(config), account_id=account_id, region=region,
                  config_file=config_file, template=template, production=config.production,
                  protected=config.production, parameters=params,
                  tags=tags or naming.environment_tags(config))


def account(kind: str, config_dir: Path, templates_dir: Path, *, deploying: bool = True) -> Target:
    """Target for an account-level stack: `bootstrap` or `pipeline`."""
    config_file = config_dir / "account.toml"
    config = load_account(config_file)
    account_id = _pinned(config.account_id, "account_id", config_file, "123456789012")
    region = _pinned(config.region, "region", config_file, "eu-west-1")
    filename = ACCOUNT_TEMPLATES[kind]
    template = _template(templates_dir / filename) if deploying else templates_dir / filename
    if deploying:
        _guard(kind, "account", config_dir, templates_dir, config_file)
    params, tags = _configuration(templates_dir / layout.configuration_file(filename))
    stack_name = (naming.bootstrap_stack_name if kind == "bootstrap" else naming.pipeline_stack_name)(
        config.app_name)
    # The bootstrap holds the image repository and the artifact bucket every environment needs.
    return Target(label=kind, kind="account", app_name=config.app_name, stack_name=stack_name,
                  account_id=account_id, region=region, config_file=config_file, template=template,
                  protected=kind == "bootstrap", parameters=params,
                  tags=tags or naming.account_tags(config, kind))


def check_image_tag(tag: str) -> str:
    if tag == "latest" or not IMAGE_TAG_PATTERN.fullmatch(tag):
        raise UsageError(
            f"image tag {tag!r} refused",
            "environments run immutable images tagged with the commit SHA; `latest` (or a tag outside "
            "[A-Za-z0-9_.-], 1-128 characters) would make a deploy unrepeatable",
            "pass --image-tag <commit sha>, e.g. --image-tag $(git rev-parse --short=12 HEAD)")
    return tag
