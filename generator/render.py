"""Render every environment and the account-level stacks to text, and write them under templates/.

Rendering is pure (config in, {relative path: text} out); only `write` touches the disk. Output is
byte-for-byte deterministic: sorted keys, no timestamps, no random ids.

The output folder holds a manifest (`.adkit-manifest.json`: every rendered path and its SHA-256). `write`
deletes only files a previous render listed there and that nobody edited since, and refuses a non-empty folder
that has no manifest and does not hold only the kit's own output (a slip such as `--templates-dir .`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from generator import compose, deploy_scopes, layout, naming
from generator.cfn import apply_permissions_boundary, apply_tags, dump_yaml, to_data, to_yaml
from generator.config import (
    ACCOUNT_FILE,
    ENVIRONMENTS_DIR,
    REPO_ROOT,
    AccountConfig,
    ConfigError,
    EnvironmentConfig,
    check_pipeline_environments,
    load_account,
    load_all,
)
from generator.deploy_permissions import PermissionsError
from generator.stacks import bootstrap, pipeline

TEMPLATES_DIR = REPO_ROOT / "templates"
BOOTSTRAP_FILE = layout.BOOTSTRAP_FILE
PIPELINE_FILE = layout.PIPELINE_FILE
MANIFEST_FILE = layout.MANIFEST_FILE
RENDERED_SUFFIXES = (".yaml", ".json")


class OutputRefused(Exception):
    """The output folder is not the kit's own (or its manifest is unreadable); the message is ready to print."""


@dataclass
class Written:
    """What `write` did, by path relative to the output folder."""

    changed: list[str] = field(default_factory=list)   # created or rewritten
    deleted: list[str] = field(default_factory=list)   # rendered before, no longer rendered, deleted
    kept: list[str] = field(default_factory=list)      # no longer rendered, but edited since: left in place


def config_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def environment_data(config: EnvironmentConfig) -> dict[str, dict]:
    """One environment's templates as data, tagged, keyed by file name relative to templates/<env>/."""
    children = compose.build_children(config)
    for child in children:
        apply_tags(child.template, naming.environment_tags(config, child.spec.component))
        apply_permissions_boundary(child.template, deploy_scopes.boundary_arn(config.app_name))
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


def _check_same_app(account: AccountConfig, environments: list[EnvironmentConfig],
                    environments_dir: Path = ENVIRONMENTS_DIR, account_file: Path = ACCOUNT_FILE) -> None:
    """Cross-file rules; errors name the files actually read."""
    for env in environments:
        if env.app_name != account.app_name:
            raise ConfigError(f"{environments_dir / (env.name + '.toml')}: app_name: must equal the account's "
                              f"app_name {account.app_name!r} from {account_file} (got {env.app_name!r})")
    check_pipeline_environments(account, environments, account_file, environments_dir)


@contextlib.contextmanager
def _naming_the_file(path: Path):
    """Rules the builders check (names too long, unknown budget components, a deployment role IAM cannot hold)
    become errors naming `path`."""
    try:
        yield
    except (ConfigError, naming.NamingError, PermissionsError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def manifest(files: dict[str, str]) -> str:
    """The manifest text: every rendered path (except the manifest itself) and the SHA-256 of its text."""
    listed = {rel: hashlib.sha256(text.encode()).hexdigest() for rel, text in sorted(files.items())
              if rel != MANIFEST_FILE}
    return config_json({"comment": "written by `adkit render`: the files it rendered. The next render deletes "
                                   "only files listed here that it no longer renders and nobody edited.",
                        "files": listed})


def render_all(environments_dir: Path = ENVIRONMENTS_DIR, account_file: Path = ACCOUNT_FILE) -> dict[str, str]:
    """Every rendered file (and the manifest), keyed by path relative to templates/. Validates all config first."""
    environments = load_all(environments_dir)
    account = load_account(account_file)
    if not environments:
        raise ConfigError(f"{environments_dir}: no environment files (*.toml)")
    _check_same_app(account, environments, environments_dir, account_file)
    data = {}
    for config in environments:   # first, so that a rule of one environment names its own file
        with _naming_the_file(environments_dir / f"{config.name}.toml"):
            data[config.name] = environment_data(config)
    files: dict[str, str] = {}
    with _naming_the_file(account_file):
        files.update(render_account(account, environments, {name: list(d.values()) for name, d in data.items()}))
    for config in environments:
        with _naming_the_file(environments_dir / f"{config.name}.toml"):
            for name, text in render_environment(config, data[config.name]).items():
                files[layout.environment_file(config.name, name)] = text
    files[MANIFEST_FILE] = manifest(files)
    return dict(sorted(files.items()))


def _safe_relative(relative: object) -> bool:
    """A manifest entry the renderer could have written: relative, no '..', no hidden part, a rendered suffix."""
    if not isinstance(relative, str) or not relative or "\\" in relative:
        return False
    path = PurePosixPath(relative)
    return (not path.is_absolute() and all(part not in ("", ".", "..") and not part.startswith(".")
                                           for part in path.parts) and path.suffix in RENDERED_SUFFIXES)


def previous_render(files: dict[str, str], out_dir: Path) -> dict[str, str]:
    """{path: sha256} of the previous render into `out_dir` (empty for a new or empty folder).

    Raises OutputRefused for a folder that is not the kit's output: it has no manifest and holds a file this
    render does not produce or that does not carry the kit's ManagedBy tag; or its manifest is not one."""
    if not out_dir.exists():
        return {}
    if not out_dir.is_dir():
        raise OutputRefused(f"{out_dir}: not a folder; choose a new or empty folder for the templates")
    listing = out_dir / MANIFEST_FILE
    if listing.is_file():
        try:
            listed = json.loads(listing.read_text(encoding="utf-8"))["files"]
            if not isinstance(listed, dict) or not all(_safe_relative(k) and isinstance(v, str)
                                                       for k, v in listed.items()):
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise OutputRefused(f"{listing}: not a manifest written by `adkit render`, so nothing in {out_dir} "
                                "is deleted or overwritten; render into a new folder, or delete the folder's "
                                "rendered files and the manifest yourself") from None
        return listed
    for path in out_dir.rglob("*"):   # stops at the first foreign file: `.` may be a large tree
        if path.is_dir() and not path.is_symlink():
            continue
        relative = path.relative_to(out_dir).as_posix()
        if relative not in files or path.is_symlink() or \
                naming.MANAGED_BY.encode() not in path.read_bytes():
            raise OutputRefused(
                f"{out_dir.resolve()}: refusing to render here: it has no {MANIFEST_FILE} and holds files "
                f"`adkit render` did not write (e.g. {relative}); pass a new or empty folder with --templates-dir")
    return {}


def write(files: dict[str, str], out_dir: Path = TEMPLATES_DIR) -> Written:
    """Write files (the manifest last); delete files the previous render listed, no longer renders and nobody
    edited since. Raises OutputRefused (before writing anything) for a folder that is not the kit's output."""
    previous = previous_render(files, out_dir)
    result = Written()
    for relative, text in files.items():
        if relative == MANIFEST_FILE:
            continue
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != text.encode():
            path.write_text(text, encoding="utf-8")
            result.changed.append(relative)
    for relative, digest in sorted(previous.items()):
        path = out_dir / relative
        if relative in files or path.is_symlink() or not path.is_file():
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            result.kept.append(relative)
            continue
        path.unlink()
        result.deleted.append(relative)
        parent = path.parent
        while parent != out_dir and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    if MANIFEST_FILE in files:
        path = out_dir / MANIFEST_FILE
        if not path.is_file() or path.read_bytes() != files[MANIFEST_FILE].encode():
            path.write_text(files[MANIFEST_FILE], encoding="utf-8")
            result.changed.append(MANIFEST_FILE)
    return result


def differences(files: dict[str, str], out_dir: Path = TEMPLATES_DIR) -> list[str]:
    """Relative paths whose committed content differs from `files`: missing or changed (the manifest included),
    then stale: rendered files (.yaml/.json outside hidden folders) that `files` no longer has."""
    result = [rel for rel, text in files.items()
              if not (out_dir / rel).is_file() or (out_dir / rel).read_bytes() != text.encode()]
    existing = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")
                if p.is_file() and p.suffix in RENDERED_SUFFIXES}
    result += sorted(rel for rel in existing - set(files) if _safe_relative(rel))
    return result
