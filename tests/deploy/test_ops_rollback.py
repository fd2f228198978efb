"""`adkit rollback` and the parameter-change lines of plan/deploy, end to end against the local moto server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from generator.deploy import flow
from generator.ops import rollback

pytestmark = pytest.mark.slow


def _params(kit, env="dev") -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in kit.stack(env)["Parameters"]}


def _deployed(kit, tag: str) -> None:
    kit.bootstrap()   # pushes v1, then v2
    result = kit.run("deploy", "dev", "--image-tag", tag, "--yes")
    assert result.code == 0, result.text


def test_rollback_redeploys_the_image_pushed_before_the_deployed_one(kit):
    _deployed(kit, "v2")

    result = kit.run("rollback", "dev", "--yes")

    assert result.code == 0, result.text
    assert _params(kit)["ImageTag"] == "v1"
    assert "ImageTag: v2 → v1" in result.err          # the change set names the parameter change
    assert "<- deployed" in result.err and kit.change_sets("dev") == []


def test_rollback_to_a_named_tag_and_declining_changes_nothing(kit):
    _deployed(kit, "v1")

    declined = kit.run("rollback", "dev", "--to", "v2", stdin="n\n")

    assert declined.code == 4, declined.text
    assert _params(kit)["ImageTag"] == "v1" and kit.change_sets("dev") == []
    assert "Execute this change set" in declined.err


def test_rollback_without_an_older_image_says_how_to_name_one(kit):
    _deployed(kit, "v1")   # v1 is the oldest push

    result = kit.run("rollback", "dev", "--yes")

    assert result.code == 2
    assert "no image was pushed before the deployed one" in result.err and "--to <tag>" in result.err
    assert "Traceback" not in result.text


def test_plan_prints_the_image_tag_change(kit):
    _deployed(kit, "v1")

    result = kit.run("plan", "dev", "--image-tag", "v2")

    assert result.code == 0, result.text
    assert "Parameter changes:" in result.out and "ImageTag: v1 → v2" in result.out


def test_previous_tag_is_the_newest_push_before_the_deployed_one():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    images = [rollback.Image(("c",), t0 + timedelta(hours=3)), rollback.Image(("b", "b-alias"), t0 + timedelta(2)),
              rollback.Image(("a",), t0)]

    assert rollback.previous_tag(images, "c") == "b"
    assert rollback.previous_tag(images, "b-alias") == "a"
    assert rollback.previous_tag(images, "a") is None
    assert rollback.previous_tag(images, "gone") is None


def test_parameter_changes_hide_noecho_values_and_skip_unchanged():
    existing = {"Parameters": [{"ParameterKey": "ImageTag", "ParameterValue": "old"},
                               {"ParameterKey": "Token", "ParameterValue": "****"},
                               {"ParameterKey": "Same", "ParameterValue": "x"}]}
    params = [{"ParameterKey": "ImageTag", "ParameterValue": "new"}, {"ParameterKey": "Token", "ParameterValue": "s"},
              {"ParameterKey": "Same", "ParameterValue": "x"}, {"ParameterKey": "Kept", "UsePreviousValue": True}]

    lines = [line.text for line in flow.parameter_changes(existing, params)]
    first = [line.text for line in flow.parameter_changes(None, params[:2], {"Token": {"NoEcho": True}})]

    assert lines == ["Parameter changes:", "    ImageTag: old → new", "    Token: (hidden) → (hidden)"]
    assert first == ["Parameter changes:", "    ImageTag: (none) → new", "    Token: (hidden) → (hidden)"]


def test_the_fix_hint_after_a_failed_bootstrap_names_adkit_bootstrap():
    from pathlib import Path

    from generator.deploy.targets import Target

    boot = Target(label="bootstrap", kind="account", app_name="app", stack_name="app-bootstrap",
                  account_id="123456789012", region="eu-west-1", config_file=Path("account.toml"),
                  template=Path("bootstrap.yaml"))

    hint = flow.next_steps(boot, "ROLLBACK_COMPLETE", [])

    assert "`adkit bootstrap`" in hint and "adkit deploy" not in hint
