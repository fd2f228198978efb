"""Render every environment and the account-level stacks to text, and write them under templates/.

Rendering is pure (config in, {relative path: text} out); only `write` touches the disk. Output is
byte-for-byte deterministic: sorted keys, no timestamps, no random ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from generator import naming
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
from generator.stacks import bootstrap, pipeline, root

TEMPLATES_DIR = REPO_ROOT / "templates"
BOOTSTRAP_FILE = "bootstrap.yaml"
PIPELINE_FILE = "pipeline.yaml"


def config_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _render_environment(config: EnvironmentConfig) -> tuple[dict[str, str], list[dict]]:
    """Files of one environment, relative to templates/<env>/, and its templates as data (root first)."""
    children = root.build_children(config)
    for child in children:
        apply_tags(child.template, naming.environment_tags(config, child.component))
    data = [to_data(root.build(config, children))] + [to_data(child.template) for child in children]
    files = {child.filename: dump_yaml(child_data) for child, child_data in zip(children, data[1:], strict=True)}
    files[root.ROOT_FILE] = dump_yaml(data[0])
    files[root.ROOT_FILE.replace(".yaml", ".config.json")] = config_json(root.template_configuration(config))
    return files, data


def render_environment(config: EnvironmentConfig) -> dict[str, str]:
    """Files of one environment, relative to templates/<env>/."""
    return _render_environment(config)[0]


def render_account(account: AccountConfig, environments: list[EnvironmentConfig],
                   rendered: dict[str, list[dict]] | None = None) -> dict[str, str]:
    """Account-level templates, relative to templates/. `rendered`: the environments' templates as data, so
    the pipeline's deployment role reads their resource types without building them again."""
    boot = apply_tags(bootstrap.build(account, environments), naming.account_tags(account, "bootstrap"))
    pipe = apply_tags(pipeline.build(account, environments, rendered), naming.account_tags(account, "pipeline"))
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
    files: dict[str, str] = {}
    rendered: dict[str, list[dict]] = {}
    for config in environments:
        env_files, rendered[config.name] = _render_environment(config)
        for name, text in env_files.items():
            files[f"{config.name}/{name}"] = text
    files.update(render_account(account, environments, rendered))
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
