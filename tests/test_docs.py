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
