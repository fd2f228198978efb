"""The kit's own test configuration (tests/fixtures/config), so behavioural tests never read the adopter's config/.

`copy_config(tmp_path)` gives a private, editable copy; `edit(path, old, new)` changes one text fragment and
fails when the fragment is not there (a silent no-op edit would make a test pass for the wrong reason);
`environment_data(name)` gives one environment file as a fresh dict, to change before `parse_environment`.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from generator.config import load_account, load_all, load_environment

FIXTURE_CONFIG = Path(__file__).resolve().parent / "fixtures" / "config"
FIXTURE_ENVIRONMENTS = FIXTURE_CONFIG / "environments"
FIXTURE_ACCOUNT = FIXTURE_CONFIG / "account.toml"


def copy_config(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(FIXTURE_CONFIG, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} has no {old!r} to replace"
    path.write_text(text.replace(old, new, 1))


def environment(name: str):
    return load_environment(name, FIXTURE_ENVIRONMENTS)


def environments():
    return load_all(FIXTURE_ENVIRONMENTS)


def account():
    return load_account(FIXTURE_ACCOUNT)


def environment_data(name: str) -> dict:
    """The fixture environment file `name` as parsed TOML: a new dict on every call, free to change."""
    return tomllib.loads((FIXTURE_ENVIRONMENTS / f"{name}.toml").read_text())
