"""The kit keeps working the moment a team makes it theirs.

The adoption edits (tests/adopter.py: pin account and region, rename the app, add `staging` before the last
pipeline environment, a reader and a custom domain in dev) are applied to a copy of the config; the copy renders
and every property of tests/properties.py holds for it, as for the config itself. Plus: the first command stays
light (no cfn-lint, boto3, botocore or rich import while rendering).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import adopter
import fixture_config
import properties
import pytest
import yaml
from cfn_helpers import rendered

from generator import render
from generator.config import CONFIG_DIR, load_account, load_all

REPO = Path(__file__).resolve().parent.parent
FIXTURE_RENDERED = Path(__file__).resolve().parent / "fixtures" / "rendered"


@dataclass(frozen=True)
class Adopted:
    config: Path
    files: dict[str, str]
    source: str        # the environment the edits treat as "dev"
    new: str           # the environment they add


@pytest.fixture(scope="module")
def adopted(tmp_path_factory) -> Adopted:
    config = tmp_path_factory.mktemp("adopted") / "config"
    shutil.copytree(CONFIG_DIR, config)
    # a config that has the new environment already (adopted before) gets another one, so the edits still add one
    taken = {p.stem for p in (config / "environments").glob("*.toml")}
    new = next(n for n in (adopter.NEW_ENVIRONMENT, "staging2", "staging3", "staging4") if n not in taken)
    source = adopter.adopt(config, new)
    return Adopted(config, render.render_all(config / "environments", config / "account.toml"), source, new)


def test_properties_hold_for_the_config():
    assert properties.violations(rendered(), load_all()) == []


def test_properties_hold_after_the_adoption_edits(adopted):
    environments = load_all(adopted.config / "environments")
    assert adopted.new in [e.name for e in environments]
    assert properties.violations(adopted.files, environments) == []


def test_the_adopted_config_renders_what_was_asked(adopted):
    files, source = adopted.files, adopted.source
    account = load_account(adopted.config / "account.toml")
    assert account.app_name == adopter.APP_NAME and account.account_id == adopter.ACCOUNT_ID
    assert account.pipeline_environments[-2] == adopted.new
    environments = {e.name: e for e in load_all(adopted.config / "environments")}
    assert all(e.account_id == adopter.ACCOUNT_ID and e.region == adopter.REGION for e in environments.values())
    pipeline = yaml.safe_load(files["pipeline.yaml"])["Resources"]["Pipeline"]["Properties"]
    stages = [s["Name"] for s in pipeline["Stages"]]
    last = account.pipeline_environments[-1]
    assert stages.index(f"Deploy-{adopted.new}") < stages.index(f"Deploy-{last}")
    gated = next(s for s in pipeline["Stages"] if s["Name"] == f"Deploy-{last}")
    assert [a["ActionTypeId"]["Category"] for a in gated["Actions"]] == ["Deploy", "Approval", "Deploy"]
    staging = yaml.safe_load(files[f"{adopted.new}/network.yaml"])
    (vpc,) = [r for r in staging["Resources"].values() if r["Type"] == "AWS::EC2::VPC"]
    assert vpc["Properties"]["CidrBlock"] == adopter.NEW_CIDR
    dev_branch = files[f"{source}/frontend_branch.yaml"]
    assert environments[source].frontend.custom_domain.name in dev_branch and "AWS::Amplify::Domain" in dev_branch
    readers = [r for r in yaml.safe_load(files[f"{source}/data.yaml"])["Resources"].values()
               if r["Type"] == "AWS::RDS::DBInstance"]
    assert len(readers) == 2


def test_the_adopted_render_is_lint_clean(adopted, tmp_path):
    """What the edits change: the new environment, dev (reader, custom domain) and the account-level stacks
    (the rest is linted on the config's own render by tests/test_lint_and_scan.py)."""
    render.write(adopted.files, tmp_path)
    changed = [p for p in sorted(tmp_path.rglob("*.yaml"))
               if p.parent == tmp_path or p.parent.name in (adopted.new, adopted.source)]
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or "cfn-lint"
    result = subprocess.run([cfn_lint, "--format", "parseable", *map(str, changed)],
                            capture_output=True, text=True, check=False)
    blocking = [line for line in result.stdout.splitlines() if ":E" in line or ":W" in line]
    assert not blocking, "\n".join(blocking)
    assert result.returncode in (0, 8), result.stderr


@pytest.mark.parametrize("break_it", ["wildcard", "description", "retention", "secret_reader", "bucket_tls"])
def test_the_property_checks_catch_a_broken_template(break_it):
    files = dict(rendered())
    environments = load_all()
    env = environments[0].name
    path = f"{env}/backend.yaml" if break_it in ("wildcard", "secret_reader") else f"{env}/data.yaml"
    data = yaml.safe_load(files[path])
    resources = data["Resources"]
    if break_it == "wildcard":
        resources["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"] = ["s3:*"]
    elif break_it == "description":
        next(iter(resources.values()))["Metadata"] = {}
    elif break_it == "retention":
        group = next(r for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup")
        group["Properties"]["RetentionInDays"] = 7
    elif break_it == "secret_reader":
        extra = copy.deepcopy(resources["InstanceRole"])
        resources["AnotherRole"] = extra
    else:
        for lid in [lid for lid, r in resources.items() if r["Type"] == "AWS::S3::BucketPolicy"]:
            del resources[lid]
    files[path] = yaml.safe_dump(data)
    assert properties.violations(files, environments), f"{break_it}: not caught"


def test_the_committed_fixture_backend_template_is_a_fresh_render():
    """tests/service reads it (the declared variable and secret of the fixture dev); it must not drift."""
    fresh = render.render_all(fixture_config.FIXTURE_ENVIRONMENTS, fixture_config.FIXTURE_ACCOUNT)
    committed = FIXTURE_RENDERED / "dev" / "backend.yaml"
    assert committed.read_text() == fresh["dev/backend.yaml"], (
        f"{committed} is stale: `.venv/bin/adkit render --config-dir tests/fixtures/config --templates-dir "
        f"/tmp/fixture-render` and copy dev/backend.yaml over it")


def test_render_imports_no_cfn_lint_boto3_botocore_or_rich(tmp_path):
    """`make render` is the first command: it loads only what rendering needs (cfn-lint's schema files are read
    from disk, its package is never imported)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "generator", "render",
                             "--templates-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO, env=env,
                            check=True)
    modules = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "import time:" in line]
    assert "generator.render" in modules   # the check sees the render's imports at all
    heavy = sorted({m for m in modules if m.split(".")[0] in ("cfnlint", "boto3", "botocore", "rich")})
    assert heavy == []
