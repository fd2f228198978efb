"""The README documents every configuration field, so a new field cannot ship undocumented."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from generator.config import AccountConfig, EnvironmentConfig

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _models(annotation) -> list[type[BaseModel]]:
    """The models a field holds: itself, or every member of a union (e.g. one per backend platform)."""
    return [candidate for candidate in (annotation, *getattr(annotation, "__args__", ()))
            if isinstance(candidate, type) and issubclass(candidate, BaseModel)]


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        nested = _models(field.annotation)
        if not nested:
            paths.append(f"{prefix}{name}")
        for member in nested:
            paths += [p for p in field_paths(member, f"{prefix}{name}.") if p not in paths]
    return paths


def test_every_environment_field_is_in_the_readme():
    missing = [p for p in field_paths(EnvironmentConfig) if f"`{p}`" not in README]
    assert not missing, f"document these fields in README 'Configuration reference': {missing}"


def test_every_account_field_is_in_the_readme():
    missing = [p for p in field_paths(AccountConfig)
               if f"`{p}`" not in README and f"`{p.split('.')[-1]}`" not in README]
    assert not missing, f"document these account fields in README: {missing}"


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_docs_resolves():
    import re

    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "apprunner" / "README.md",
             root / "amplify" / "README.md"]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # external (https:, mailto:)
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(root)}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                anchors = {_anchor(h) for h in re.findall(r"^#+\s+(.*)$", file.read_text(), re.M)}
                if anchor not in anchors:
                    broken.append(f"{page.relative_to(root)}: {target} (no heading #{anchor})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _reference_rows(start: str, end: str) -> dict[str, str]:
    """`field` -> default cell of the README's configuration tables between two markers."""
    import re

    section = README.split(start, 1)[1].split(end, 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for field in re.findall(r"`([a-z0-9_.]+)`", cells[0]):
            rows[field] = cells[1]
    return rows


def _shown(value) -> str:
    """A model default as the README writes it."""
    import json

    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(", ", ": ")) if value else ("[]" if isinstance(value, list) else "{}")
    return str(value)


def _defaults(model: type[BaseModel], prefix: str = "", optional: bool = False) -> dict[str, str]:
    """Field path -> default as the README shows it; fields of an optional table that is absent are `unset`."""
    found = {}
    for name, field in model.model_fields.items():
        nested = _models(field.annotation)
        if nested:
            default = field.get_default(call_default_factory=True)
            absent = optional or default is None
            # A union (one model per backend platform): a default that differs per member is shown as
            # "a / b" in member order; the discriminator's default is the one of the field's default value.
            merged: dict[str, list[str]] = {}
            for member in nested:
                for path, value in _defaults(member, f"{prefix}{name}.", absent).items():
                    merged.setdefault(path, [])
                    if value not in merged[path]:
                        merged[path].append(value)
            for path, values in merged.items():
                if len(nested) > 1 and path.endswith(".platform") and default is not None:
                    values = [_shown(default.platform)]
                found[path] = " / ".join(values)
        elif field.is_required():
            found[f"{prefix}{name}"] = "unset" if optional else "required"
        else:
            found[f"{prefix}{name}"] = _shown(field.get_default(call_default_factory=True))
    return found


def _cell(text: str) -> str:
    return text.replace("`", "").strip()


def test_readme_defaults_equal_the_models_defaults():
    env_rows = _reference_rows("## Configuration reference", "`config/account.toml` (bootstrap and pipeline)")
    account_rows = _reference_rows("`config/account.toml` (bootstrap and pipeline)", "## Rendering")
    assert env_rows and account_rows, "README configuration tables not found"
    wrong = []
    for rows, model in ((env_rows, EnvironmentConfig), (account_rows, AccountConfig)):
        for field, default in _defaults(model).items():
            cell = rows.get(field) or rows.get(field.split(".")[-1])
            if cell is not None and _cell(cell) != default:
                wrong.append(f"{field}: README says {_cell(cell)!r}, the model's default is {default!r}")
    assert not wrong, "\n".join(wrong)
