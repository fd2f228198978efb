"""The edits a team makes on the day it adopts the kit, applied to a copy of a config folder.

Used by `tests/test_adopter.py` (render the edited copy and run the property checks over it) and by hand
(`python tests/adopter.py CONFIG_DIR`) to try the whole suite on an adopted config. Text edits, like a person
makes them, so comments and layout stay; each edit fails loudly when the file does not look as expected.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ACCOUNT_ID = "210987654321"
REGION = "ap-southeast-2"
APP_NAME = "acme"
NEW_ENVIRONMENT = "staging"
NEW_CIDR = "10.30.0.0/16"
DEV_DOMAIN = "dev.acme-ads.net"


def _pin(text: str, key: str, value: str) -> str:
    """Set `key = "value"` at top level: uncomment the sample's commented line, replace a set one, or add it."""
    line = f'{key} = "{value}"'
    commented = re.compile(rf"^#\s*{key}\s*=.*$", re.M)
    current = re.compile(rf"^{key}\s*=.*$", re.M)
    if current.search(text):
        return current.sub(line, text, count=1)
    if commented.search(text):
        return commented.sub(line, text, count=1)
    return re.sub(r"^(app_name\s*=.*)$", rf"\1\n{line}", text, count=1, flags=re.M)


def _set_in_table(text: str, table: str, key: str, value: str) -> str:
    """Set `key = value` inside `[table]` (added to the table when absent)."""
    header = re.search(rf"^\[{re.escape(table)}\]\s*$", text, re.M)
    if not header:
        return text.rstrip("\n") + f"\n\n[{table}]\n{key} = {value}\n"
    end = re.search(r"^\[", text[header.end():], re.M)
    stop = header.end() + (end.start() if end else len(text) - header.end())
    body = text[header.end():stop]
    pattern = re.compile(rf"^{key}\s*=[^#\n]*?(?=\s*(#|$))", re.M)
    body = pattern.sub(f"{key} = {value}", body, count=1) if pattern.search(body) else f"\n{key} = {value}{body}"
    return text[:header.end()] + body + text[stop:]


def adopt(config_dir: Path, new_environment: str = NEW_ENVIRONMENT) -> str:
    """Apply the adoption edits of issue 11 to `config_dir` (account.toml + environments/*.toml) in place:
    pin account and region everywhere, rename the app to `acme`, add `new_environment` (a copy of dev with its
    own name, CIDR and branch, promoted before the last pipeline environment), a reader and a custom domain in dev
    (a domain only when dev has none). "dev" is the config's `dev` environment, else its first pipeline
    environment. Returns the name of that environment. Applying it twice changes nothing more."""
    environments = config_dir / "environments"
    files = [config_dir / "account.toml", *sorted(environments.glob("*.toml"))]
    for path in files:
        text = path.read_text()
        text = re.sub(r'^app_name\s*=\s*"[^"]*"', f'app_name = "{APP_NAME}"', text, count=1, flags=re.M)
        text = _pin(_pin(text, "account_id", ACCOUNT_ID), "region", REGION)
        path.write_text(text)
        tomllib.loads(text)  # every edited file stays valid TOML

    order = tomllib.loads((config_dir / "account.toml").read_text()).get("pipeline_environments", ["dev", "prod"])
    source = "dev" if (environments / "dev.toml").is_file() else order[0]
    dev = environments / f"{source}.toml"
    new_file = environments / f"{new_environment}.toml"
    if not new_file.exists():  # idempotent: a config adopted already (the suite run on an adopted clone)
        _add_environment(dev, new_file, source, new_environment)

    text = _set_in_table(dev.read_text(), "database", "reader", "true")
    if "[frontend.custom_domain]" not in text:
        text = text.rstrip("\n") + f'\n\n[frontend.custom_domain]\nname = "{DEV_DOMAIN}"\n'
    dev.write_text(text)

    account = config_dir / "account.toml"
    text = account.read_text()
    if new_environment not in order:
        order = [*order[:-1], new_environment, order[-1]]
    listed = "[" + ", ".join(f'"{name}"' for name in order) + "]"
    if re.search(r"^pipeline_environments\s*=", text, re.M):
        text = re.sub(r"^pipeline_environments\s*=\s*\[[^\]]*\]", f"pipeline_environments = {listed}", text,
                      count=1, flags=re.M)
    else:
        text = re.sub(r"^(app_name\s*=.*)$", rf"\1\npipeline_environments = {listed}", text, count=1, flags=re.M)
    account.write_text(text)
    for path in [*files, new_file]:
        tomllib.loads(path.read_text())
    return source


def _add_environment(dev: Path, new_file: Path, source: str, name: str) -> None:
    """A copy of dev with its own name, VPC CIDR and branch (the branch is the environment's name)."""
    staging = re.sub(rf'^name\s*=\s*"{source}"', f'name = "{name}"', dev.read_text(), count=1, flags=re.M)
    staging = _set_in_table(staging, "network", "vpc_cidr", f'"{NEW_CIDR}"')
    staging = _set_in_table(staging, "frontend", "branch", f'"{name}"')
    new_file.write_text(staging)


if __name__ == "__main__":
    adopt(Path(sys.argv[1]))
