"""`adkit check`: the deploy-time config rules without AWS, as the pipeline's infra build runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    return target


def _pin(path: Path) -> None:
    text = path.read_text().replace('# account_id = "123456789012"', 'account_id = "123456789012"')
    path.write_text(text.replace('# region = "eu-west-1"', 'region = "eu-west-1"'))


def _run(config: Path, *envs: str) -> int:
    return main(["check", *envs, "--config-dir", str(config), "--templates-dir", str(REPO / "templates")])


def test_deploy_check_passes_a_pinned_environment(config, capsys):
    _pin(config / "environments" / "dev.toml")
    assert _run(config, "dev") == 0
    assert "dev: deployable as adagency-dev to account 123456789012, region eu-west-1" in capsys.readouterr().err


def test_deploy_check_refuses_an_environment_without_account_pin(config, capsys):
    assert _run(config, "dev") == 2
    assert "dev.toml: account_id is not set" in capsys.readouterr().err


def test_deploy_check_refuses_the_shipped_example_domain(config, capsys):
    _pin(config / "environments" / "prod.toml")
    assert _run(config, "prod") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "frontend.custom_domain.name is the example domain 'example.com'" in err


def test_deploy_check_names_an_unknown_environment(config, capsys):
    assert _run(config, "qa9") == 2
    assert "unknown environment 'qa9'" in capsys.readouterr().err


@pytest.mark.parametrize("platform", ["apprunner", "ecs-express"])
def test_deploy_check_says_which_backend_platform_the_environment_uses(config, capsys, platform):
    """A new environment (any shipped one, renamed) with a [backend] table that names only the platform."""
    environments = config / "environments"
    data = next(environments.glob("*.toml")).read_text()
    data = "\n".join(line for line in data.splitlines() if not line.startswith("name ="))
    start, end = data.index("[backend]"), data.index("[frontend]")
    backend = f'[backend]\nplatform = "{platform}"\n\n'
    (environments / "qa9.toml").write_text('name = "qa9"\n' + data[:start] + backend + data[end:])
    _pin(environments / "qa9.toml")
    templates = config.parent / "templates"
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(templates)]) == 0
    assert main(["check", "qa9", "--config-dir", str(config), "--templates-dir", str(templates)]) == 0
    assert f"qa9: backend platform {platform}" in " ".join(capsys.readouterr().err.split())
