"""Hostile and careless config input: refused with one message naming file, field, what is allowed and what was
given; never a traceback, never rendered. Adding the next hostile input is one line in HOSTILE.

Uses its own fixture config (tests/fixtures/hostile), never the shipped config/.
"""

from __future__ import annotations

import copy
import shutil
import tomllib
from pathlib import Path

import pytest

from generator.cli import main
from generator.config import (
    ConfigError,
    load_account,
    load_environment,
    parse_environment,
)

CONFIG = Path(__file__).parent / "fixtures" / "hostile"
ENV = "qa"


def _base(kind: str) -> dict:
    path = CONFIG / "account.toml" if kind == "account" else CONFIG / "environments" / f"{ENV}.toml"
    return tomllib.loads(path.read_text())


def _with(kind: str, field: str, value) -> dict:
    data = copy.deepcopy(_base(kind))
    *parents, leaf = field.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


def _parse(kind: str, data: dict, tmp_path: Path):
    if kind == "env":
        return parse_environment(data, f"{ENV}.toml")
    path = tmp_path / "account.toml"
    path.write_text(_toml(data))
    return load_account(path)


def _toml(data: dict, prefix: str = "") -> str:
    """Just enough of a TOML writer for the account file (scalars, lists of scalars, tables)."""
    import json

    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    text = "\n".join(lines) + "\n"
    for key, value in tables:
        text += f"[{prefix}{key}]\n" + _toml(value, f"{prefix}{key}.")
    return text


LONG = "a" * 300
# (file: env | account, field path, bad value, fragments the one message must contain)
HOSTILE = [
    # lax types: no coercion; the message names the expected type
    ("env", "production", "false", ["production", "valid boolean", "got 'false'"]),
    ("env", "production", 0, ["production", "valid boolean", "got 0"]),
    ("env", "network.az_count", "2", ["network.az_count", "valid integer", "got '2'"]),
    ("env", "network.az_count", True, ["network.az_count", "valid integer", "got True"]),
    ("env", "network.az_count", 2.0, ["network.az_count", "valid integer"]),
    ("env", "database.max_acu", "4", ["database.max_acu", "valid number", "got '4'"]),
    ("env", "database.max_acu", True, ["database.max_acu", "valid number"]),
    ("env", "database.reader", 1, ["database.reader", "valid boolean"]),
    ("env", "database.performance_insights_retention_days", True, ["performance_insights_retention_days"]),
    ("env", "budget.monthly_usd", "50", ["budget.monthly_usd", "valid number"]),
    ("env", "budget.monthly_usd", float("nan"), ["budget.monthly_usd", "finite number"]),
    ("env", "budget.monthly_usd", float("inf"), ["budget.monthly_usd", "finite number"]),
    ("env", "budget.component_limits_usd", {"backend": True}, ["budget.component_limits_usd", "valid number"]),
    ("env", "alerts.thresholds.capacity_ratio", float("nan"), ["capacity_ratio", "finite number"]),
    ("env", "alerts.thresholds.database_connections", "500", ["database_connections", "valid integer"]),
    ("env", "frontend.node_version", 20, ["frontend.node_version", "'20'"]),
    ("env", "frontend.pull_request_previews", "yes", ["frontend.pull_request_previews", "valid boolean"]),
    ("env", "alerts.emails", "oncall@acme.test", ["alerts.emails", "valid list"]),
    # VPC ranges: RFC 1918 only
    ("env", "network.vpc_cidr", "169.254.0.0/16", ["network.vpc_cidr", "RFC 1918", "10.0.0.0/8"]),
    ("env", "network.vpc_cidr", "100.64.0.0/16", ["network.vpc_cidr", "RFC 1918"]),
    ("env", "network.vpc_cidr", "192.0.2.0/24", ["network.vpc_cidr"]),
    ("env", "network.vpc_cidr", "198.18.0.0/16", ["network.vpc_cidr", "RFC 1918"]),
    ("env", "network.vpc_cidr", "172.32.0.0/16", ["network.vpc_cidr", "RFC 1918"]),
    ("env", "network.vpc_cidr", "127.0.0.0/16", ["network.vpc_cidr", "RFC 1918"]),
    # engine versions as RDS writes them
    ("env", "database.engine_version", "17.07", ["database.engine_version", "no leading zeros"]),
    ("env", "database.engine_version", "017.7", ["database.engine_version", "no leading zeros"]),
    ("env", "database.engine_version", "17.7\n", ["database.engine_version"]),
    # reserved database names
    ("env", "database.database_name", "postgres", ["database.database_name", "reserved", "got 'postgres'"]),
    ("env", "database.database_name", "template1", ["database.database_name", "reserved"]),
    ("env", "database.database_name", "rdsadmin", ["database.database_name", "reserved"]),
    ("env", "database.database_name", "user", ["database.database_name", "reserved"]),
    ("env", "database.database_name", "App", ["database.database_name", "lower-case letters"]),
    # e-mail addresses
    ("env", "alerts.emails", ["on\x00call@acme.test"], ["alerts.emails.0", "e-mail address", "control characters"]),
    ("env", "alerts.emails", ["oncall@acme.test\n"], ["alerts.emails.0", "e-mail address"]),
    ("env", "alerts.emails", ["a@b@acme.test"], ["alerts.emails.0", "e-mail address"]),
    ("env", "alerts.emails", ["oncall@acme..test"], ["alerts.emails.0", "e-mail address"]),
    ("env", "alerts.emails", ["oncall@-acme.test"], ["alerts.emails.0", "e-mail address"]),
    ("env", "alerts.emails", ["oncall@localhost"], ["alerts.emails.0", "e-mail address"]),
    ("env", "alerts.emails", [".oncall@acme.test"], ["alerts.emails.0", "e-mail address"]),
    ("env", "alerts.emails", ["on call@acme.test"], ["alerts.emails.0", "e-mail address"]),
    ("env", "alerts.emails", ["x@acme.test", "x@acme.test"], ["alerts.emails", "once", "'x@acme.test'"]),
    ("account", "approval_emails", ["x@acme.test", "x@acme.test"], ["approval_emails", "once"]),
    ("account", "approval_emails", ["lead\x07@acme.test"], ["approval_emails.0", "e-mail address"]),
    # domains and sub-domains: said in words
    ("env", "frontend.custom_domain", {"name": "https://acme.test"}, ["custom_domain.name", "no scheme"]),
    ("env", "frontend.custom_domain", {"name": "Acme.test"}, ["custom_domain.name", "lower-case"]),
    ("env", "frontend.custom_domain", {"name": "acme.test."}, ["custom_domain.name", "no trailing dot"]),
    ("env", "frontend.custom_domain", {"name": "bücher.test"}, ["custom_domain.name", "punycode"]),
    ("env", "frontend.custom_domain", {"name": "acme.test", "subdomains": ["www", "www"]},
     ["custom_domain.subdomains", "once", "'www'"]),
    ("env", "frontend.custom_domain", {"name": "acme.test", "subdomains": ["-www"]},
     ["custom_domain.subdomains.0", "DNS label"]),
    # git branch names (git check-ref-format --branch)
    ("env", "frontend.branch", "feature//x", ["frontend.branch", "'//'"]),
    ("env", "frontend.branch", "", ["frontend.branch", "empty"]),
    ("env", "frontend.branch", "a..b", ["frontend.branch", "'..'"]),
    ("env", "frontend.branch", "release/", ["frontend.branch", "end with '/'"]),
    ("env", "frontend.branch", "x.lock", ["frontend.branch", ".lock"]),
    ("env", "frontend.branch", "x@{1}", ["frontend.branch", "'@{'"]),
    ("env", "frontend.branch", "x\x00y", ["frontend.branch", "control characters"]),
    ("env", "frontend.branch", "feat:x", ["frontend.branch", "~ ^ :"]),
    ("env", "frontend.branch", "feat/.hidden", ["frontend.branch", "start with '.'"]),
    ("env", "frontend.branch", LONG, ["frontend.branch", "255"]),
    ("account", "source_branch", "", ["source_branch", "empty"]),
    ("account", "source_branch", "main feature", ["source_branch", "spaces"]),
    ("account", "source_branch", "-main", ["source_branch", "'-'"]),
    # cron expressions with impossible fields
    ("env", "backup.schedule", "cron(60 3 * * ? *)", ["backup.schedule", "MINUTE 0-59"]),
    ("env", "backup.schedule", "cron(0 24 * * ? *)", ["backup.schedule", "HOUR 0-23"]),
    ("env", "backup.schedule", "cron(x 3 * * ? *)", ["backup.schedule", "cron(MINUTE HOUR * * ? *)"]),
    ("env", "backup.schedule", "cron(0 3 * * ? *)\n", ["backup.schedule"]),
    # budgets below any real amount
    ("env", "budget.monthly_usd", 0.01, ["budget.monthly_usd", "greater than or equal to 1"]),
    ("env", "budget.component_limits_usd", {"backend": 0.5}, ["budget.component_limits_usd", "from 1 to"]),
    # pattern errors say what is allowed in words, not as a regular expression
    ("env", "region", "EU-WEST-1", ["region", "AWS region code like eu-west-1", "got 'EU-WEST-1'"]),
    ("env", "account_id", "12345", ["account_id", "12-digit AWS account id"]),
    ("env", "app_name", "Acme_App", ["app_name", "lower-case letters, digits and '-'"]),
    ("env", "database.backup_window", "2:00-3:00", ["database.backup_window", "hh:mm-hh:mm"]),
    ("env", "backend.health_check_path", "/health z", ["backend.health_check_path", "starting with '/'"]),
    ("env", "frontend.repository", "https://git\x00hub.com/a/b", ["frontend.repository", "HTTPS repository URL"]),
    ("env", "frontend.repository", "https://-/a/b", ["frontend.repository", "HTTPS repository URL"]),
    ("account", "source_repository", "https://github.com/acme-org/acme-app", ["source_repository", "OWNER/REPOSITORY"]),
    ("account", "source_repository", "../acme-app", ["source_repository", "OWNER/REPOSITORY"]),
    ("account", "source_repository", "acme-org/..", ["source_repository", "OWNER/REPOSITORY"]),
    ("env", "frontend.repository", "https://github.com/../acme-web", ["frontend.repository", "HTTPS repository URL"]),
    ("account", "source_provider", "GitHubEnterpriseServer", ["source_host_arn"]),
    ("account", "pipeline_environments", ["qa", "live\x00"], ["pipeline_environments.1", "lower-case letters"]),
    ("account", "pipeline_environments", ["qa", "qa"], ["pipeline_environments", "once"]),
]


@pytest.mark.parametrize(("kind", "field", "value", "expected"), HOSTILE,
                         ids=[f"{k}:{f}={v!r}"[:90] for k, f, v, _ in HOSTILE])
def test_hostile_value_is_refused_naming_field_allowed_and_given(kind, field, value, expected, tmp_path):
    with pytest.raises(ConfigError) as error:
        _parse(kind, _with(kind, field, value), tmp_path)
    message = str(error.value)
    for part in expected:
        assert part in message, f"{part!r} missing from:\n{message}"
    assert "[a-z" not in message and "^" not in message.replace("~ ^ :", ""), f"raw regex in:\n{message}"


GOOD = [
    ("env", "database.max_acu", 8),          # an integer where a number is expected is fine
    ("env", "budget.monthly_usd", 1),
    ("env", "network.vpc_cidr", "172.16.0.0/16"),
    ("env", "network.vpc_cidr", "192.168.0.0/16"),
    ("env", "frontend.branch", "release/2026.11"),
    ("env", "alerts.emails", ["first.last+ops@mail.acme.test", "b@xn--bcher-kva.test"]),
    ("env", "backup.schedule", "cron(30 23 * * ? *)"),
    ("env", "database.database_name", "acme_app"),
    ("env", "frontend.custom_domain", {"name": "xn--bcher-kva.test", "subdomains": ["", "app"]}),
]


@pytest.mark.parametrize(("kind", "field", "value"), GOOD, ids=[f"{f}={v!r}" for _, f, v in GOOD])
def test_reasonable_values_still_pass(kind, field, value, tmp_path):
    _parse(kind, _with(kind, field, value), tmp_path)


# ---- files that are not UTF-8 or not TOML ---------------------------------------------------------------------

def _config_copy(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    return config


def test_a_latin1_byte_is_named_with_its_offset(tmp_path):
    path = tmp_path / "qa.toml"
    text = (CONFIG / "environments" / "qa.toml").read_bytes()
    path.write_bytes(b"# caf\xe9\n" + text)
    with pytest.raises(ConfigError) as error:
        load_environment("qa", tmp_path)
    assert str(error.value) == f"{path}: not valid UTF-8 (byte 0xe9 at offset 5); save the file as UTF-8"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "qa.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (CONFIG / "environments" / "qa.toml").read_bytes())
    assert load_environment("qa", tmp_path).name == "qa"


def test_deeply_nested_toml_is_not_valid_toml(tmp_path):
    path = tmp_path / "account.toml"
    path.write_text("app_name = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"account.toml: not valid TOML"):
        load_account(path)


@pytest.mark.parametrize("command", [
    ["render"], ["render", "--check"], ["check", ENV], ["deploy", ENV], ["plan", ENV], ["status", ENV],
    ["secrets", "set", ENV, "gemini-api-key"], ["destroy", ENV], ["restore", ENV, "--latest"],
    ["bootstrap"], ["pipeline"],
])
@pytest.mark.parametrize("broken", ["latin1", "nested"])
def test_every_command_reads_config_through_the_same_loader(command, broken, tmp_path, capsys):
    config = _config_copy(tmp_path)
    target = config / "account.toml" if command[0] in ("render", "bootstrap", "pipeline") else \
        config / "environments" / f"{ENV}.toml"
    if broken == "latin1":
        target.write_bytes(b"# \xe9\n" + target.read_bytes())
        expected = f"{target}: not valid UTF-8 (byte 0xe9 at offset 2)"
    else:
        target.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
        expected = f"{target}: not valid TOML"
    code = main([*command, "--config-dir", str(config)] +
                (["--templates-dir", str(tmp_path / "t")] if command[0] != "restore" else []))
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and "Traceback" not in err


# ---- cross-file rules name the files actually read ---------------------------------------------------------------

def test_app_name_mismatch_names_the_files_read(tmp_path, capsys):
    config = _config_copy(tmp_path)
    qa = config / "environments" / "qa.toml"
    qa.write_text(qa.read_text().replace('app_name = "acme"', 'app_name = "other"'))
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert f"{qa}: app_name: must equal the account's app_name 'acme' from {config / 'account.toml'}" in err


def test_unknown_pipeline_environment_names_the_account_file_read(tmp_path, capsys):
    config = _config_copy(tmp_path)
    account = config / "account.toml"
    account.write_text(account.read_text().replace('["qa", "live"]', '["qa", "staging", "live"]'))
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert f"{account}: pipeline_environments: unknown environment(s) ['staging']" in err


@pytest.mark.parametrize("order", ['["live", "qa"]', '["qa", "live", "qa2"]', '["live", "qa2", "qa"]'])
def test_production_must_come_after_every_non_production_environment(order, tmp_path, capsys):
    config = _config_copy(tmp_path)
    qa2 = (config / "environments" / "qa.toml").read_text().replace('name = "qa"', 'name = "qa2"')
    (config / "environments" / "qa2.toml").write_text(qa2)
    account = config / "account.toml"
    account.write_text(account.read_text().replace('["qa", "live"]', order))
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert f"{account}: pipeline_environments: production environment 'live' must be last" in err


def test_errors_found_while_building_name_the_file(tmp_path, capsys):
    config = _config_copy(tmp_path)
    qa = config / "environments" / "qa.toml"
    qa.write_text(qa.read_text().replace("monthly_usd = 50", "monthly_usd = 50\ncomponent_limits_usd = { nosuch = 5 }"))
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(tmp_path / "t")]) == 2
    assert f"{qa}: budget.component_limits_usd: unknown component(s) nosuch" in capsys.readouterr().err


def test_two_production_environments_in_a_row_are_refused(tmp_path, capsys):
    """The pipeline approves only the last environment: the first of two production ones would go unapproved."""
    config = _config_copy(tmp_path)
    live2 = (config / "environments" / "live.toml").read_text().replace('name = "live"', 'name = "live2"')
    (config / "environments" / "live2.toml").write_text(live2)
    account = config / "account.toml"
    account.write_text(account.read_text().replace('["qa", "live"]', '["qa", "live", "live2"]'))
    assert main(["render", "--config-dir", str(config), "--templates-dir", str(tmp_path / "t")]) == 2
    assert "deploy unapproved" in capsys.readouterr().err
