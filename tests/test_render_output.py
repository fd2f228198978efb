"""`adkit render --templates-dir DIR` deletes only what it rendered before, and refuses a folder that is not its own.

Uses its own fixture config (tests/fixtures/hostile), never the shipped config/.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from generator import render
from generator.cli import main

CONFIG = Path(__file__).parent / "fixtures" / "hostile"


@functools.cache
def _files() -> dict[str, str]:
    return render.render_all(CONFIG / "environments", CONFIG / "account.toml")


def files() -> dict[str, str]:
    return dict(_files())


def _unrelated_tree(root: Path) -> dict[str, bytes]:
    """A project folder someone might slip into: YAML and JSON of their own, some in hidden folders."""
    content = {
        "docker-compose.yaml": b"services: {}\n",
        "package.json": b'{"name": "web"}\n',
        "ci/workflow.yaml": b"on: push\n",
        ".github/workflows/build.yaml": b"jobs: {}\n",
        ".vscode/settings.json": b"{}\n",
        "bootstrap.yaml": b"# my own bootstrap notes\n",   # same name as a rendered file, not the kit's
    }
    for relative, data in content.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return content


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_render_into_a_foreign_folder_is_refused_and_deletes_nothing(tmp_path, capsys):
    before = _unrelated_tree(tmp_path)

    code = main(["render", "--config-dir", str(CONFIG), "--templates-dir", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2, err
    assert _snapshot(tmp_path) == before
    assert err.count("\n") == 1 and "refusing to render here" in err and str(tmp_path) in err
    assert render.MANIFEST_FILE in err


def test_render_refuses_a_folder_whose_manifest_is_not_the_kits(tmp_path):
    (tmp_path / "keep.yaml").write_text("mine: true\n")
    (tmp_path / render.MANIFEST_FILE).write_text(json.dumps({"files": {"../outside.yaml": "x", "keep.yaml": "y"}}))
    with pytest.raises(render.OutputRefused, match="not a manifest written by `adkit render`"):
        render.write(files(), tmp_path)
    assert (tmp_path / "keep.yaml").read_text() == "mine: true\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [render.MANIFEST_FILE, "keep.yaml"]


def test_render_writes_a_deterministic_manifest_of_what_it_rendered(tmp_path):
    fresh = files()
    written = render.write(fresh, tmp_path)
    listed = json.loads((tmp_path / render.MANIFEST_FILE).read_text())["files"]
    assert set(listed) == set(fresh) - {render.MANIFEST_FILE}
    assert sorted(written.changed) == sorted(fresh) and written.deleted == []
    assert render.manifest(fresh) == render.manifest(dict(reversed(list(fresh.items()))))
    assert render.differences(fresh, tmp_path) == []


def test_stale_rendered_file_is_deleted_and_reported_as_deleted(tmp_path):
    fresh = files()
    earlier = {**fresh, "old/root.yaml": "stale\n"}
    earlier[render.MANIFEST_FILE] = render.manifest(earlier)
    render.write(earlier, tmp_path)
    hidden = tmp_path / ".git" / "config.json"
    hidden.parent.mkdir()
    hidden.write_text("{}\n")
    own = tmp_path / "notes.yaml"
    own.write_text("mine: true\n")   # written by a person into a kit folder: not listed, so never deleted

    assert render.differences(fresh, tmp_path) == [render.MANIFEST_FILE, "notes.yaml", "old/root.yaml"]
    written = render.write(fresh, tmp_path)

    assert written.deleted == ["old/root.yaml"]
    assert written.changed == [render.MANIFEST_FILE]
    assert not (tmp_path / "old").exists()
    assert hidden.read_text() == "{}\n" and own.read_text() == "mine: true\n"


def test_render_cli_reports_deletions_apart_from_changes(tmp_path, capsys):
    fresh = files()
    earlier = {**fresh, "old/root.yaml": "stale\n"}
    earlier[render.MANIFEST_FILE] = render.manifest(earlier)
    render.write(earlier, tmp_path)

    assert main(["render", "--config-dir", str(CONFIG), "--templates-dir", str(tmp_path)]) == 0

    err = capsys.readouterr().err
    assert "1 changed, 1 deleted" in err
    assert "  deleted  old/root.yaml" in err and "  changed  .adkit-manifest.json" in err


def test_stale_file_edited_since_it_was_rendered_is_kept_and_reported(tmp_path):
    fresh = files()
    earlier = {**fresh, "old/root.yaml": "rendered\n"}
    earlier[render.MANIFEST_FILE] = render.manifest(earlier)
    render.write(earlier, tmp_path)
    (tmp_path / "old" / "root.yaml").write_text("edited by hand\n")

    written = render.write(fresh, tmp_path)

    assert written.kept == ["old/root.yaml"] and written.deleted == []
    assert (tmp_path / "old" / "root.yaml").read_text() == "edited by hand\n"


def test_a_folder_holding_only_the_kits_output_without_manifest_is_accepted(tmp_path):
    """Upgrade path: a templates/ folder rendered before manifests existed."""
    fresh = files()
    for relative, text in fresh.items():
        if relative != render.MANIFEST_FILE:
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).write_text(text)
    written = render.write(fresh, tmp_path)
    assert written.changed == [render.MANIFEST_FILE] and written.deleted == []
