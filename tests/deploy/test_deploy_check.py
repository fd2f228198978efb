"""`adkit check`: the deploy-time config rules without AWS, as the pipeline's infra build runs them.

Runs on a copy of the kit's fixture config (tests/fixtures/config), rendered into a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_config import copy_config, edit

from generator import naming
from generator.cli import main
from generator.config import load_environment


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    return copy_config(tmp_path)


def _render(config: Path) -> Path:
    templates = config.parent / "templates"
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(templates)]) == 0
    return templates


def _run(config: Path, *envs: str, templates: Path | None = None) -> int:
    templates = templates or _render(config)
    return main(["check", *envs, "--config-dir", str(config), "--templates-dir", str(templates)])


def test_deploy_check_passes_a_pinned_environment(config, capsys):
    dev = load_environment("dev", config / "environments")
    assert _run(config, "dev") == 0
    assert (f"dev: deployable as {naming.root_stack_name(dev)} to account {dev.account_id}, region {dev.region}"
            in capsys.readouterr().err)


def test_deploy_check_refuses_an_environment_without_account_pin(config, capsys):
    dev = config / "environments" / "dev.toml"
    edit(dev, 'account_id = "123456789012"', "")
    assert _run(config, "dev") == 2
    assert "dev.toml: account_id: not set" in capsys.readouterr().err


def test_deploy_check_refuses_the_example_domain(config, capsys):
    edit(config / "environments" / "prod.toml", 'name = "kit-fixture.net"', 'name = "example.com"')
    assert _run(config, "prod") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "frontend.custom_domain.name" in err and "example.com" in err


def test_deploy_check_names_an_unknown_environment(config, capsys):
    assert _run(config, "nosuchenv") == 2
    assert "unknown environment 'nosuchenv'" in capsys.readouterr().err


def test_deploy_check_reports_every_problem_of_every_environment_in_one_run(config, capsys):
    templates = _render(config)
    edit(config / "environments" / "dev.toml", 'region = "eu-west-1"', "")
    edit(config / "environments" / "dev.toml", 'branch = "develop"', 'branch = "EXAMPLE"')
    edit(config / "environments" / "prod.toml", 'name = "kit-fixture.net"', 'name = "shop.example.org"')
    edit(config / "account.toml", 'source_repository = "kit-owner/kit-app"',
         'source_repository = "example-org/app"')
    (templates / "prod" / "network.yaml").write_text("tampered\n")
    capsys.readouterr()
    assert _run(config, "dev", "prod", "bootstrap", "pipeline", templates=templates) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "dev.toml: region: not set" in err
    assert "dev.toml: frontend.branch: 'EXAMPLE' is an example value" in err
    assert "prod.toml: frontend.custom_domain.name: 'shop.example.org' is an example value" in err
    assert "account.toml: source_repository: 'example-org/app' is an example value" in err
    assert "prod/network.yaml" in err and "not a fresh render" in err
    assert "dev/frontend_branch.yaml" in err   # the branch change is not rendered yet


def test_deploy_check_covers_the_account_level_stacks(config, capsys):
    templates = _render(config)
    capsys.readouterr()
    assert _run(config, "bootstrap", "pipeline", templates=templates) == 0
    err = capsys.readouterr().err
    assert "bootstrap: deployable as kit-bootstrap" in err and "pipeline: deployable as kit-pipeline" in err
    (templates / "pipeline.yaml").write_text("tampered\n")
    assert _run(config, "pipeline", templates=templates) == 2
    assert "pipeline.yaml" in capsys.readouterr().err


def test_deploy_refuses_templates_that_are_not_a_fresh_render(config, capsys):
    templates = _render(config)
    edit(config / "environments" / "dev.toml", "monthly_usd = 150", "monthly_usd = 175")
    capsys.readouterr()
    code = main(["deploy", "dev", "--config-dir", str(config), "--templates-dir", str(templates)])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "refusing to deploy dev" in err and "dev/monitoring.yaml" in err and "make render" in err


@pytest.mark.parametrize("platform", ["apprunner", "ecs-express"])
def test_deploy_check_says_which_backend_platform_the_environment_uses(config, capsys, platform):
    """A new environment (any shipped one, renamed) with a [backend] table that names only the platform."""
    environments = config / "environments"
    data = next(environments.glob("*.toml")).read_text()
    data = "\n".join(line for line in data.splitlines() if not line.startswith("name ="))
    start, end = data.index("[backend]"), data.index("[frontend]")
    backend = f'[backend]\nplatform = "{platform}"\n\n'
    (environments / "qa9.toml").write_text('name = "qa9"\n' + data[:start] + backend + data[end:])
    templates = config.parent / "templates"
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(templates)]) == 0
    assert main(["check", "qa9", "--config-dir", str(config), "--templates-dir", str(templates)]) == 0
    assert f"qa9: backend platform {platform}" in " ".join(capsys.readouterr().err.split())
