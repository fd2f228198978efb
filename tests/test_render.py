"""Rendering: deterministic, fast, golden (committed templates equal a fresh render), wired by name."""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path

import pytest
import yaml
from cfn_helpers import ENVIRONMENTS, all_templates, rendered, resources_of, stack, template
from fixture_config import copy_config

from generator import compose, contract, naming, render
from generator.cfn import DESCRIPTION_KEY
from generator.config import load_environment

REPO = Path(__file__).resolve().parent.parent


def _resource_diff(path: str, committed: str, fresh: str) -> str:
    """Name the resources (or sections) that differ, then a short text diff."""
    old, new = yaml.safe_load(committed) or {}, yaml.safe_load(fresh) or {}
    names = []
    if isinstance(old, dict) and isinstance(new, dict):
        for section in sorted(set(old) | set(new)):
            a, b = old.get(section), new.get(section)
            if a == b:
                continue
            if isinstance(a, dict) and isinstance(b, dict) and section in {"Resources", "Outputs", "Parameters"}:
                names += [f"{section}.{key}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
            else:
                names.append(section)
    diff = "".join(list(difflib.unified_diff(committed.splitlines(True), fresh.splitlines(True),
                                             f"committed/{path}", f"fresh/{path}"))[:40])
    return f"{path}: differs in {', '.join(names) or 'formatting'}\n{diff}"


def test_committed_templates_equal_a_fresh_render():
    fresh = rendered()
    problems = []
    for relative, text in fresh.items():
        path = render.TEMPLATES_DIR / relative
        if not path.is_file():
            problems.append(f"{relative}: missing from templates/ (run `make render`)")
        elif path.read_text() != text:
            problems.append(_resource_diff(relative, path.read_text(), text))
    stale = set(render.differences(fresh)) - set(fresh)
    problems += [f"{relative}: stale file, no longer rendered" for relative in sorted(stale)]
    assert not problems, "templates/ is not a fresh render; run `make render` and review:\n" + "\n".join(problems)


def test_rendering_twice_gives_identical_bytes():
    assert render.render_all() == render.render_all()


def test_rendering_every_environment_takes_about_a_second():
    started = time.perf_counter()
    render.render_all()
    elapsed = time.perf_counter() - started
    # ~0.4-0.8 s on the 2-core CI machine; the margin absorbs a loaded machine, not a 3x regression.
    assert elapsed < 3.0, f"render_all took {elapsed:.2f} s"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_root_uses_relative_template_urls_for_every_child(env):
    stacks = resources_of(stack(env, "root"), "AWS::CloudFormation::Stack")
    urls = sorted(res["Properties"]["TemplateURL"] for res in stacks.values())
    assert urls == sorted(spec.filename for spec in compose.children(load_environment(env)))
    for url in urls:
        assert f"{env}/{url}" in rendered()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_children_get_values_only_from_root_parameters_or_sibling_outputs(env):
    root_template = stack(env, "root")
    assert set(root_template["Parameters"]) == {contract.IMAGE_TAG_PARAMETER}
    for logical_id, res in resources_of(root_template, "AWS::CloudFormation::Stack").items():
        child = template(f"{env}/{res['Properties']['TemplateURL']}")
        passed = res["Properties"].get("Parameters", {})
        assert set(passed) == set(child.get("Parameters", {})), logical_id
        for value in passed.values():
            if "Fn::GetAtt" in value:
                source, attribute = value["Fn::GetAtt"]
                assert attribute.startswith("Outputs.") and source in root_template["Resources"]
                assert attribute.removeprefix("Outputs.") in template(
                    f"{env}/{root_template['Resources'][source]['Properties']['TemplateURL']}")["Outputs"]
            else:
                assert value == {"Ref": contract.IMAGE_TAG_PARAMETER}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_image_tag_refuses_latest(env):
    import re

    parameter = stack(env, "root")["Parameters"][contract.IMAGE_TAG_PARAMETER]
    assert "Default" not in parameter
    pattern = re.compile(parameter["AllowedPattern"])
    assert not pattern.match("latest")
    assert pattern.match("3f9c2ab") and pattern.match("latest-build-7") and not pattern.match("")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_console_sees_labelled_parameter_groups(env):
    interface = stack(env, "root")["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = {p for group in interface["ParameterGroups"] for p in group["Parameters"]}
    assert grouped == set(stack(env, "root")["Parameters"]) == set(interface["ParameterLabels"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_template_configuration_has_stack_tags_and_no_secrets(env):
    config = json.loads(rendered()[f"{env}/root.config.json"])
    assert set(config) == {"Parameters", "Tags"}
    assert config["Tags"] == naming.environment_tags(load_environment(env))


def test_every_resource_has_a_human_description():
    missing = [f"{path}:{lid}" for path, tmpl in all_templates().items()
               for lid, res in tmpl.get("Resources", {}).items()
               if not res.get("Metadata", {}).get(DESCRIPTION_KEY)]
    assert not missing, f"resources without a description in Metadata: {missing}"


def test_bad_config_stops_before_anything_is_written(tmp_path, capsys):
    from generator.cli import main

    config = copy_config(tmp_path)
    dev = config / "environments" / "dev.toml"
    dev.write_text(dev.read_text().replace("monthly_usd = 150", "monthly_usd = -1"))
    out = tmp_path / "templates"
    code = main(["render", "--config-dir", str(config), "--templates-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "dev.toml" in err and "budget.monthly_usd: Input should be greater than or equal to 1 (got -1)" in err
    assert not out.exists(), "nothing may be written when any config file is invalid"


def test_render_cli_writes_the_same_files_into_another_folder(tmp_path):
    from generator.cli import main

    assert main(["render", "--templates-dir", str(tmp_path)]) == 0
    written = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == rendered()
    assert main(["render", "--check", "--templates-dir", str(tmp_path)]) == 0
    (tmp_path / "dev" / "network.yaml").write_text("tampered\n")
    assert main(["render", "--check", "--templates-dir", str(tmp_path)]) == 1


def test_rendering_is_identical_across_processes_with_different_hash_seeds(tmp_path):
    """Set iteration order varies with PYTHONHASHSEED between processes; the output must not."""
    import os
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "generator", "render", "--templates-dir", str(out)],
                       check=True, env=env, capture_output=True, cwd=REPO)
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert outputs[0] == outputs[1]
    assert {k: v.decode() for k, v in outputs[0].items()} == rendered()


@pytest.mark.parametrize("count", [13, 15])
def test_a_pipeline_whose_deploy_role_iam_cannot_hold_is_one_error_naming_the_account_file(tmp_path, capsys, count):
    """Every pipeline environment adds its own ARNs to the deployment role; past IAM's limits (10,240 characters
    of inline policy, 10 managed policies per role) the render stops with one line, before anything is written.
    12 pipeline environments fit (docs/pipeline.md)."""
    from generator.cli import main

    config = copy_config(tmp_path)
    dev = (config / "environments" / "dev.toml").read_text()
    names = [f"e{i}" for i in range(count - 1)]
    for name in names:
        (config / "environments" / f"{name}.toml").write_text(dev.replace('name = "dev"', f'name = "{name}"', 1))
    account = config / "account.toml"
    account.write_text(account.read_text().replace('pipeline_environments = ["dev", "prod"]',
                                                   f"pipeline_environments = {json.dumps([*names, 'prod'])}", 1))
    out = tmp_path / "templates"
    code = main(["render", "--config-dir", str(config), "--templates-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "account.toml" in err and f"for {count} pipeline environments; IAM allows" in err, err
    assert "Traceback" not in err and not out.exists()
