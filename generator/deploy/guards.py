"""Guards before anything reaches AWS: no leftover example values in the config, templates freshly rendered.

Pure checks over the config folder and the templates folder (no AWS calls). Each returns every problem it
finds as one line naming the file and the field (or the template), so `adkit check` reports them all at once;
`deploy`, `plan`, `bootstrap` and `pipeline` refuse when there is any.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

# RFC 2606 example domains and the sample's example owner (any case), and EXAMPLE markers (upper case only: a
# marker, not the word "example").
EXAMPLE_DOMAIN_OR_OWNER = re.compile(r"example\.(com|org|net)\b|example-org", re.IGNORECASE)
EXAMPLE_MARKER = re.compile(r"\bEXAMPLE\b")


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")


def is_example(value: str) -> bool:
    return bool(EXAMPLE_DOMAIN_OR_OWNER.search(value) or EXAMPLE_MARKER.search(value))


def example_values(config_file: Path) -> list[str]:
    """One line per value of `config_file` that is still an example (example.com/.org/.net, example-org, an
    EXAMPLE marker); comments are not values. A missing or unreadable file gives no line here (loading it
    reports that)."""
    try:
        data = tomllib.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    return [f"{config_file}: {field}: {value!r} is an example value; replace it with your own"
            for field, value in _strings(data, "") if is_example(value)]


def _rendered(config_dir: Path) -> dict[str, str]:
    from generator import render  # rendering imports every stack builder: only when a check needs it

    return render.render_all(config_dir / "environments", config_dir / "account.toml")


def stale_templates(config_dir: Path, templates_dir: Path, label: str, kind: str) -> list[str]:
    """Templates of one environment (`kind` "environment", files under <templates>/<label>/) or one
    account-level stack (`kind` "account": bootstrap.yaml or pipeline.yaml) that are not a fresh render of
    `config_dir`: missing, different or left over. One line naming the files."""
    fresh = _rendered(config_dir)
    if kind == "environment":
        prefix = f"{label}/"
        mine = {path: text for path, text in fresh.items() if path.startswith(prefix)}
        folder = templates_dir / label
        existing = {f"{prefix}{p.relative_to(folder).as_posix()}" for p in folder.rglob("*")
                    if p.is_file() and p.suffix in {".yaml", ".json"}} if folder.is_dir() else set()
    else:
        mine = {path: text for path, text in fresh.items() if path == f"{label}.yaml"}
        existing = {path for path in mine if (templates_dir / path).is_file()}
    differ = sorted(path for path, text in mine.items()
                    if not (templates_dir / path).is_file() or (templates_dir / path).read_text() != text)
    differ += sorted(existing - set(mine))
    if not differ:
        return []
    return [f"{templates_dir}: not a fresh render of {config_dir} for {label} ({', '.join(differ)}); "
            "run `make render` (or `adkit render`), review and commit the templates"]


def problems(config_dir: Path, templates_dir: Path, label: str, kind: str, config_file: Path) -> list[str]:
    """Every guard problem of one target: example values in its config file (and, for an environment, the
    account file it renders with), then stale templates."""
    found = example_values(config_file)
    account_file = config_dir / "account.toml"
    if kind == "environment" and account_file != config_file:
        found += example_values(account_file)
    return found + stale_templates(config_dir, templates_dir, label, kind)
