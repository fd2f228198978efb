"""`adkit cost`: the estimate follows the config and the rendered resources; every price is sourced and dated."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fixture_config
import pytest
from cfn_helpers import ENVIRONMENTS

from generator import render
from generator.cli import main
from generator.config import load_environment, parse_environment
from generator.deploy import templates
from generator.deploy.errors import UsageError
from generator.ops import cost

BASE = {"name": "qa", "app_name": "acme", "budget": {"monthly_usd": 500},
        "frontend": {"repository": "https://github.com/example-org/web", "branch": "main"}}


def _write(config, folder: Path) -> templates.Loaded:
    for name, text in render.render_environment(config).items():
        (folder / config.name).mkdir(parents=True, exist_ok=True)
        (folder / config.name / name).write_text(text)
    return templates.load(folder / config.name / "root.yaml")


def _config(**sections):
    data = json.loads(json.dumps(BASE))
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return parse_environment(data)


def test_every_price_has_both_regions_a_source_and_a_read_date():
    book = cost.price_book()
    assert book["regions"] == ["us-east-1", "eu-west-1"]
    for key, entry in book["prices"].items():
        for region in book["regions"]:
            assert isinstance(entry[region], int | float) and entry[region] >= 0, (key, region)
        assert entry["source"].startswith("https://aws.amazon.com/"), key
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["read"]), key
        assert isinstance(entry["checked"], bool) and entry["unit"].startswith("USD per"), key


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_estimate_of_every_environment_covers_each_component_and_adds_up(env, tmp_path):
    config = load_environment(env)
    found = cost.estimate(config, _write(config, tmp_path), "us-east-1")

    components = set(found.by_component())
    assert {"network", "backend", "data", "security", "secrets", "frontend", "monitoring"} <= components
    assert found.idle_usd == pytest.approx(sum(line.idle_usd for line in found.lines), abs=0.05)
    assert all(line.idle_usd <= line.busy_usd for line in found.lines)
    keys = {line.item.split(" (")[0] for line in found.lines}
    compute = "App Runner memory" if config.backend.platform == "apprunner" else "Fargate memory"
    for expected in ("NAT gateway hours", compute, "Aurora Serverless v2 capacity", "KMS customer "
                     "managed keys", "Secrets Manager secrets", "CloudWatch alarms", "WAF web ACL"):
        assert expected in keys, expected


def test_idle_floor_follows_min_acu_nat_mode_and_instances(tmp_path):
    paused = _config(database={"min_acu": 0, "seconds_until_auto_pause": 300})
    warm = _config(database={"min_acu": 1}, network={"nat_mode": "one_per_az", "az_count": 3},
                   backend={"min_instances": 2})

    idle_paused = {line.item.split(" (")[0]: line.idle_usd
                   for line in cost.estimate(paused, _write(paused, tmp_path / "a"), "us-east-1").lines}
    idle_warm = {line.item.split(" (")[0]: line.idle_usd
                 for line in cost.estimate(warm, _write(warm, tmp_path / "b"), "us-east-1").lines}

    hours = cost.price_book()["hours_per_month"]
    price = cost.price_book()["prices"]
    assert idle_paused["Aurora Serverless v2 capacity"] == 0
    assert idle_warm["Aurora Serverless v2 capacity"] == pytest.approx(hours * price["aurora.acu_hour"]["us-east-1"],
                                                                        abs=0.01)
    assert idle_warm["NAT gateway hours"] == pytest.approx(3 * idle_paused["NAT gateway hours"], abs=0.02)
    assert idle_warm["App Runner memory"] == pytest.approx(2 * idle_paused["App Runner memory"], abs=0.02)


def test_warns_when_the_idle_floor_alone_exceeds_the_budget(tmp_path):
    config = _config(budget={"monthly_usd": 20})

    found = cost.estimate(config, _write(config, tmp_path), "eu-west-1")

    assert found.idle_usd > 20 and "idle floor alone" in found.warning


def test_an_unknown_region_is_refused_in_one_line(tmp_path):
    config = _config()

    with pytest.raises(UsageError, match=r"no prices for region ap-south-1.*us-east-1, eu-west-1"):
        cost.estimate(config, _write(config, tmp_path), "ap-south-1")


def test_cost_command_offline_json_and_text(tmp_path, capsys):
    """The kit's own fixture config (pinned to a region the price file carries), never the adopter's config/."""
    config_dir = tmp_path / "config"
    (config_dir / "environments").mkdir(parents=True)
    source = fixture_config.FIXTURE_ENVIRONMENTS
    name = "dev"
    (config_dir / "environments" / f"{name}.toml").write_text((source / f"{name}.toml").read_text())
    _write(load_environment(name, source), tmp_path / "templates")
    args = ["--config-dir", str(config_dir), "--templates-dir", str(tmp_path / "templates")]

    assert main(["cost", name, "--json", "--region", "eu-west-1", *args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["region"] == "eu-west-1" and data["idle_usd"] <= data["busy_usd"]
    assert all(line["source"].startswith("https://aws.amazon.com/") for line in data["lines"])

    assert main(["cost", name, *args]) == 0
    text = capsys.readouterr().out
    assert "TOTAL" in text and "budget.monthly_usd" in text and "\x1b[" not in text

    assert main(["cost", "nope", *args]) == 2


def test_ecs_fargate_services_are_priced_from_their_task_definitions():
    body = {"Resources": {
        "TaskDef": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"Cpu": "512", "Memory": "1024"}},
        "Worker": {"Type": "AWS::ECS::Service",
                   "Properties": {"TaskDefinition": {"Ref": "TaskDef"}, "DesiredCount": 2}},
        "Dynamic": {"Type": "AWS::ECS::Service", "Properties": {"TaskDefinition": {"Ref": "Elsewhere"}}}}}
    loaded = templates.Loaded(Path("root.yaml"), "", {"Resources": {"Workers": {"Type": templates.NESTED_STACK}}},
                              {"Workers": templates.Loaded(Path("w.yaml"), "", body)})

    priced = {line.item: line for line in cost.price(cost.usage(_config(), loaded), "us-east-1")}

    hours, book = cost.price_book()["hours_per_month"], cost.price_book()["prices"]
    vcpu = priced["Fargate vCPU (Worker: 0.5 vCPU per task)"]
    memory = priced["Fargate memory (Worker: 1 GB per task)"]
    assert vcpu.component == memory.component == "workers"
    assert vcpu.idle_usd == pytest.approx(2 * 0.5 * hours * book["fargate.vcpu_hour"]["us-east-1"], abs=0.01)
    assert memory.busy_usd == pytest.approx(2 * 1 * hours * book["fargate.gb_hour"]["us-east-1"], abs=0.01)
    assert not any("Dynamic" in item for item in priced)


def test_a_service_that_scales_from_zero_costs_nothing_idle_and_one_task_busy():
    body = {"Resources": {
        "TaskDef": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"Cpu": "1024", "Memory": "2048"}},
        "Worker": {"Type": "AWS::ECS::Service",
                   "Properties": {"TaskDefinition": {"Ref": "TaskDef"}, "DesiredCount": 0}}}}
    loaded = templates.Loaded(Path("root.yaml"), "", {"Resources": {"Workers": {"Type": templates.NESTED_STACK}}},
                              {"Workers": templates.Loaded(Path("w.yaml"), "", body)})

    vcpu = next(i for i in cost.usage(_config(), loaded) if i.price_key == "fargate.vcpu_hour")

    assert vcpu.idle == 0 and vcpu.busy == cost.price_book()["busy_profile"]["worker_active_hours"]
