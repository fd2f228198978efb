"""Render every environment and the account-level stacks to text, and write them under templates/.

Rendering is pure (config in, {relative path: text} out); only `write` touches the disk. Output is
byte-for-byte deterministic: sorted keys, no timestamps, no random ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from generator import compose, layout, naming
from generator.cfn import apply_tags, dump_yaml, to_data, to_yaml
from generator.config import (
    ACCOUNT_FILE,
    ENVIRONMENTS_DIR,
    REPO_ROOT,
    AccountConfig,
    ConfigError,
    EnvironmentConfig,
    load_account,
    load_all,
)
from generator.stacks import bootstrap, pipeline

TEMPLATES_DIR = REPO_ROOT / "templates"
BOOTSTRAP_FILE = layout.BOOTSTRAP_FILE
PIPELINE_FILE = layout.PIPELINE_FILE


def config_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def environment_data(config: EnvironmentConfig) -> dict[str, dict]:
    """One environment's templates as data, tagged, keyed by file name relative to templates/<env>/."""
    children = compose.build_children(config)
    for child in children:
        apply_tags(child.template, naming.environment_tags(config, child.spec.component))
    data = {child.spec.filename: to_data(child.template) for child in children}
    data[layout.ROOT_FILE] = to_data(compose.build_root(config, children))
    return data


def render_environment(config: EnvironmentConfig, data: dict[str, dict] | None = None) -> dict[str, str]:
    """Files of one environment, relative to templates/<env>/ (from `environment_data` when given)."""
    files = {name: dump_yaml(template) for name, template in (data or environment_data(config)).items()}
    files[layout.ROOT_CONFIGURATION_FILE] = config_json(compose.template_configuration(config))
    return files


def render_account(account: AccountConfig, environments: list[EnvironmentConfig],
                   environment_templates: dict[str, list[dict]]) -> dict[str, str]:
    """Account-level templates, relative to templates/. environment_templates: as pipeline.build takes."""
    boot = apply_tags(bootstrap.build(account, environments), naming.account_tags(account, "bootstrap"))
    pipe = apply_tags(pipeline.build(account, environments, environment_templates),
                      naming.account_tags(account, "pipeline"))
    return {BOOTSTRAP_FILE: to_yaml(boot), PIPELINE_FILE: to_yaml(pipe)}


def _check_same_app(account: AccountConfig, environments: list[EnvironmentConfig]) -> None:
    for env in environments:
        if env.app_name != account.app_name:
            raise ConfigError(f"{ENVIRONMENTS_DIR / (env.name + '.toml')}: app_name: must equal the account's "
                              f"app_name {account.app_name!r} from {ACCOUNT_FILE} (got {env.app_name!r})")
    missing = [name for name in account.pipeline_environments if name not in {e.name for e in environments}]
    if missing:
        raise ConfigError(f"{ACCOUNT_FILE}: pipeline_environments: unknown environment(s) {missing}; "
                          f"known: {sorted(e.name for e in environments)}")


def render_all(environments_dir: Path = ENVIRONMENTS_DIR, account_file: Path = ACCOUNT_FILE) -> dict[str, str]:
    """Every rendered file, keyed by path relative to templates/. Validates all config first."""
    environments = load_all(environments_dir)
    account = load_account(account_file)
    if not environments:
        raise ConfigError(f"{environments_dir}: no environment files (*.toml)")
    _check_same_app(account, environments)
    data = {config.name: environment_data(config) for config in environments}
    files = dict(render_account(account, environments, {name: list(d.values()) for name, d in data.items()}))
    for config in environments:
        for name, text in render_environment(config, data[config.name]).items():
            files[layout.environment_file(config.name, name)] = text
    return dict(sorted(files.items()))


def write(files: dict[str, str], out_dir: Path = TEMPLATES_DIR) -> list[str]:
    """Write files, remove stale rendered files; returns the relative paths that changed."""
    changed = []
    for relative, text in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(relative)
    for path in sorted(out_dir.rglob("*")):
        relative = path.relative_to(out_dir).as_posix()
        if path.is_file() and path.suffix in {".yaml", ".json"} and relative not in files:
            path.unlink()
            changed.append(relative)
    for directory in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return changed


def differences(files: dict[str, str], out_dir: Path = TEMPLATES_DIR) -> list[str]:
    """Relative paths whose committed content differs from `files` (missing, changed or stale)."""
    result = [rel for rel, text in files.items()
              if not (out_dir / rel).is_file() or (out_dir / rel).read_text() != text]
    existing = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")
                if p.is_file() and p.suffix in {".yaml", ".json"}}
    result += sorted(existing - set(files))
    return result
