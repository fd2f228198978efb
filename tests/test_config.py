"""Bad configuration is refused before anything renders, naming the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_config import FIXTURE_ENVIRONMENTS, environment_data

from generator.config import (
    ConfigError,
    load_all,
    load_environment,
    parse_environment,
)


def with_changes(changes: dict[str, object]) -> dict:
    """The fixture dev file with each dotted field path set to its value (DELETE removes the key)."""
    data = environment_data("dev")
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


def with_change(path: str, value) -> dict:
    return with_changes({path: value})


class _Deleted:
    """Sentinel: remove the key (stable repr, so test ids are the same in every process)."""

    def __repr__(self) -> str:
        return "<deleted>"


DELETE = _Deleted()

# (field path, bad value, substrings the message must contain)
BAD_INPUTS = [
    ("network.az_count", 1, ["network.az_count", "greater than or equal to 2", "got 1"]),
    ("network.nat_mode", "per_subnet", ["network.nat_mode", "'single'", "'one_per_az'"]),
    ("network.vpc_cidr", "10.0.0.0/8", ["network.vpc_cidr", "/16 and /20"]),
    ("network.vpc_cidr", "8.8.0.0/16", ["network.vpc_cidr", "private"]),
    ("network.vpc_cidr", "10.0.0.1/16", ["network.vpc_cidr", "IPv4 network"]),
    ("database.engine_version", "15.4", ["database.engine_version", "16.x, 17.x, 18.x"]),
    ("database.engine_version", "16.1", ["database.engine_version", "at least 16.3"]),
    ("database.min_acu", 0.3, ["database.min_acu", "multiple of 0.5"]),
    ("database.max_acu", 300, ["database.max_acu", "less than or equal to 256"]),
    ("database.seconds_until_auto_pause", 100, ["database.seconds_until_auto_pause", "300"]),
    ("database.backup_retention_days", 36, ["database.backup_retention_days", "35"]),
    ("logging.retention_days", 45, ["logging.retention_days", "30, 60, 90"]),
    ("logging.retention_days", 14, ["logging.retention_days", ">= 30"]),
    ("alerts.emails", ["not-an-email"], ["alerts.emails.0", "not-an-email"]),
    ("budget.monthly_usd", 0, ["budget.monthly_usd", "greater than or equal to 1"]),
    ("backend.cpu", "3 vCPU", ["backend.cpu", "'0.25 vCPU'", "'4 vCPU'"]),
    ("backend.memory", "8 GB", ["backend", "'8 GB' is not valid with cpu '1 vCPU'", "1 vCPU: 2 GB, 3 GB, 4 GB"]),
    ("backend.max_concurrency", 500, ["backend.max_concurrency", "200"]),
    ("backend.min_instances", 0, ["backend.min_instances", "greater than or equal to 1"]),
    ("backend.max_instances", 26, ["backend.max_instances", "25"]),
    ("frontend.repository", "http://github.com/org/repo", ["frontend.repository", "HTTPS"]),
    ("frontend.repository", "https://github.com/org/repo.git", ["frontend.repository", ".git"]),
    ("frontend.branch", "bad branch", ["frontend.branch", "spaces"]),
    ("account_id", "12345", ["account_id", "12-digit"]),
    ("region", "Europe", ["region", "got 'Europe'"]),
    ("app_name", "Ad_Agency", ["app_name", "got 'Ad_Agency'"]),
    ("surprise", True, ["surprise", "unknown key"]),
    ("network.surprise", True, ["network.surprise", "unknown key"]),
    ("budget", DELETE, ["budget", "Field required"]),
    ("name", "bootstrap", ["name", "reserved for the account-level stacks"]),
    # application variables and secrets: contract-owned names, AWS prefixes, invalid names
    ("backend.environment", {"DB_HOST": "x"}, ["backend.environment", "'DB_HOST' is set by the kit"]),
    ("backend.environment", {"PORT": "9000"}, ["backend.environment", "'PORT' is set by the kit"]),
    ("backend.environment", {"AWS_REGION": "x"}, ["backend.environment", "prefix AWS reserves"]),
    ("backend.environment", {"AWSAPPRUNNER_X": "x"}, ["backend.environment", "prefix AWS reserves"]),
    ("backend.environment", {"feature-flags": "x"}, ["backend.environment", "not a variable name"]),
    ("backend.environment", {"FLAGS": 3}, ["backend.environment.FLAGS", "valid string"]),
    ("backend.secrets", ["Stripe_Key"], ["backend.secrets", "kebab-case", "Stripe_Key"]),
    ("backend.secrets", ["git-token"], ["backend.secrets", "account-level Git provider token"]),
    ("backend.secrets", ["db-host"], ["backend.secrets", "'DB_HOST' is set by the kit"]),
    ("backend.secrets", ["aws-key"], ["backend.secrets", "prefix AWS reserves"]),
    ("backend.secrets", ["api-key", "api-key"], ["backend.secrets", "once"]),
    ("backend.source_dir", "../elsewhere", ["backend.source_dir", "pattern"]),
    ("backend.source_dir", "/abs/path", ["backend.source_dir", "pattern"]),
    ("frontend.environment", {"NEXT_PUBLIC_API_BASE_URL": "x"},
     ["frontend.environment", "'NEXT_PUBLIC_API_BASE_URL' is set by the kit"]),
    ("frontend.environment", {"AWS_BRANCH": "x"}, ["frontend.environment", "prefix AWS reserves"]),
    ("backend.environment", {"STRIPE_API_KEY": "sk_live"}, ["backend.environment", "looks like a secret",
                                                             "backend.secrets"]),
    ("frontend.environment", {"NEXT_PUBLIC_TOKEN": "x"}, ["frontend.environment", "looks like a secret"]),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD_INPUTS, ids=[f"{f}={v!r}" for f, v, _ in BAD_INPUTS])
def test_bad_input_is_refused_with_field_value_and_allowed(field, value, expected):
    with pytest.raises(ConfigError) as error:
        parse_environment(with_change(field, value), "dev.toml")
    message = str(error.value)
    for part in expected:
        assert part in message, f"{part!r} missing from:\n{message}"


# rules across fields: (field path -> value, the message as a regular expression)
ACROSS_FIELDS = {
    "auto_pause_only_with_min_zero": (
        {"database.min_acu": 0.5}, "seconds_until_auto_pause is allowed only when min_acu = 0"),
    "min_zero_needs_auto_pause_seconds": (
        {"database.seconds_until_auto_pause": DELETE}, "min_acu = 0 needs seconds_until_auto_pause"),
    "max_below_min_acu": (
        {"database.min_acu": 8, "database.seconds_until_auto_pause": DELETE, "database.max_acu": 4},
        r"max_acu \(4.0\) must be >= min_acu \(8.0\)"),
    "production_requires_deletion_protection": (
        {"production": True}, "deletion_protection must be true when production = true"),
    "secret_clashing_with_a_declared_variable": (
        {"backend.environment": {"PAYMENTS_ENDPOINT": "x"}, "backend.secrets": ["payments-endpoint"]},
        r"sets PAYMENTS_ENDPOINT, which backend\.secrets injects"),
}


@pytest.mark.parametrize(("changes", "expected"), ACROSS_FIELDS.values(), ids=ACROSS_FIELDS)
def test_a_rule_across_fields_is_refused(changes, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_environment(with_changes(changes))


def test_every_problem_is_reported_at_once():
    data = with_change("backend.cpu", "3 vCPU")
    data["network"]["nat_mode"] = "bogus"
    message = str(pytest.raises(ConfigError, parse_environment, data).value)
    assert "2 problem(s)" in message and "backend.cpu" in message and "network.nat_mode" in message


def test_unknown_environment_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown environment 'nosuchenv'.*known environments: dev, prod"):
        load_environment("nosuchenv", FIXTURE_ENVIRONMENTS)


def test_new_backend_and_frontend_keys_have_their_defaults():
    data = environment_data("dev")
    for section in ("backend", "frontend"):
        for key in ("environment", "secrets", "source_dir"):
            data[section].pop(key, None)
    config = parse_environment(data)
    assert config.backend.environment == {} and config.frontend.environment == {}
    assert config.backend.secrets == ["gemini-api-key"] and config.backend.source_dir == "apprunner"


def test_file_name_must_match_name(tmp_path: Path):
    (tmp_path / "qa.toml").write_text((FIXTURE_ENVIRONMENTS / "dev.toml").read_text())
    with pytest.raises(ConfigError, match="name: must equal the file name 'qa'"):
        load_environment("qa", tmp_path)


def test_invalid_toml_names_the_file(tmp_path: Path):
    (tmp_path / "qa.toml").write_text("name = \n")
    with pytest.raises(ConfigError, match=r"qa.toml: not valid TOML"):
        load_environment("qa", tmp_path)


def test_a_third_environment_is_one_more_file(tmp_path: Path):
    for name in ("dev", "prod"):
        (tmp_path / f"{name}.toml").write_text((FIXTURE_ENVIRONMENTS / f"{name}.toml").read_text())
    staging = (FIXTURE_ENVIRONMENTS / "dev.toml").read_text().replace('name = "dev"', 'name = "staging"')
    (tmp_path / "staging.toml").write_text(staging)
    assert [c.name for c in load_all(tmp_path)] == ["dev", "prod", "staging"]


@pytest.mark.parametrize(("domain", "example"), [("example.com", True), ("shop.example.org", True),
                                                  ("example.net", True), ("kit-fixture.net", False),
                                                  ("myexample.com", False)])
def test_example_domains_are_recognised(domain, example):
    data = with_change("frontend.custom_domain", {"name": domain})
    assert parse_environment(data).frontend.custom_domain.is_example is example
