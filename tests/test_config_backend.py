"""Backend and bootstrap configuration is refused before rendering, naming the field and what is allowed
(issue 3 item 7: cpu/memory pairs, concurrency and instance counts, service-name length, HTTPS repository)."""

from __future__ import annotations

import pytest
from fixture_config import environment_data

from generator.config import (
    APP_RUNNER,
    APP_RUNNER_SIZES,
    ECS_EXPRESS,
    FARGATE_SIZES,
    AccountConfig,
    ConfigError,
    parse_environment,
)


def with_backend(**changes) -> dict:
    data = environment_data("dev")
    data.setdefault("backend", {}).update(changes)
    return data


def refused(data: dict) -> str:
    with pytest.raises(ConfigError) as error:
        parse_environment(data, "dev.toml")
    return str(error.value)


# (backend changes, substrings the message must contain: the field, then what is allowed)
BAD_BACKEND = [
    ({"cpu": "0.25 vCPU", "memory": "4 GB"}, ["backend.memory", "'4 GB' is not valid with cpu '0.25 vCPU'",
                                               "0.25 vCPU: 0.5 GB, 1 GB"]),
    ({"cpu": "4 vCPU", "memory": "2 GB"}, ["backend.memory", "4 vCPU: 8 GB, 10 GB, 12 GB"]),
    ({"cpu": "2 vCPU", "memory": "3 GB"}, ["backend.memory", "2 vCPU: 4 GB, 6 GB"]),
    ({"cpu": "8 vCPU"}, ["backend.cpu", "'0.25 vCPU'", "'4 vCPU'", "got '8 vCPU'"]),
    ({"memory": "16 GB"}, ["backend.memory", "'12 GB'", "got '16 GB'"]),
    ({"max_concurrency": 0}, ["backend.max_concurrency", "greater than or equal to 1", "got 0"]),
    ({"max_concurrency": 201}, ["backend.max_concurrency", "less than or equal to 200", "got 201"]),
    ({"min_instances": 0}, ["backend.min_instances", "greater than or equal to 1"]),
    ({"min_instances": 26, "max_instances": 26}, ["backend.min_instances", "less than or equal to 25"]),
    ({"max_instances": 30}, ["backend.max_instances", "less than or equal to 25", "got 30"]),
    ({"min_instances": 3, "max_instances": 2}, ["backend.max_instances", "must be >= min_instances (3)"]),
    ({"sse_max_stream_seconds": 120}, ["backend.sse_max_stream_seconds", "less than or equal to 110"]),
    ({"health_check_path": "healthz"}, ["backend.health_check_path", "starting with '/'"]),
    ({"port": 0}, ["backend.port", "greater than or equal to 1"]),
    ({"port": 70000}, ["backend.port", "less than or equal to 65535"]),
    ({"waf_rate_limit_per_5_min": 5}, ["backend.waf_rate_limit_per_5_min", "greater than or equal to 10"]),
]


@pytest.mark.parametrize(("changes", "expected"), BAD_BACKEND, ids=[repr(c) for c, _ in BAD_BACKEND])
def test_bad_backend_settings_are_refused_naming_field_and_allowed(changes, expected):
    message = refused(with_backend(**changes))
    for part in expected:
        assert part in message, f"{part!r} missing from:\n{message}"


@pytest.mark.parametrize(("cpu", "memory"), [(c, m) for c, ms in APP_RUNNER_SIZES.items() for m in ms])
def test_every_valid_app_runner_size_is_accepted(cpu, memory):
    assert parse_environment(with_backend(cpu=cpu, memory=memory)).backend.memory == memory


def on_express(**changes) -> dict:
    """The dev file with a fresh [backend] table on ECS Express Mode plus `changes`."""
    data = environment_data("dev")
    data["backend"] = {"platform": ECS_EXPRESS, **changes}
    return data


BAD_EXPRESS = [
    ({"cpu": "1 vCPU"}, ["backend.cpu", "'256'", "'16384'", "got '1 vCPU'"]),
    ({"cpu": "256", "memory": "4096"}, ["backend.memory", "'4096' (MiB) is not valid with cpu '256'",
                                        "512..2048"]),
    ({"cpu": "1024", "memory": "2 GB"}, ["backend.memory", "MiB as digits"]),
    ({"sse_max_stream_seconds": 901}, ["backend.sse_max_stream_seconds", "less than or equal to 900"]),
    ({"requests_per_target": 5}, ["backend.requests_per_target", "greater than or equal to 10"]),
    ({"sse_max_stream_seconds": 900, "requests_per_target": 400},
     ["backend.requests_per_target", "up to 6000 open streams per task", "4000"]),
    ({"max_concurrency": 200}, ["backend.max_concurrency", "unknown key"]),
    ({"min_instances": 3, "max_instances": 2}, ["backend.max_instances", "must be >= min_instances (3)"]),
]


@pytest.mark.parametrize(("changes", "expected"), BAD_EXPRESS, ids=[repr(c) for c, _ in BAD_EXPRESS])
def test_bad_express_settings_are_refused_on_one_line_naming_the_field(changes, expected):
    message = refused(on_express(**changes))
    problems = message.splitlines()[1:]
    assert len(problems) == 1, message
    for part in expected:
        assert part in problems[0], f"{part!r} missing from:\n{message}"


def test_an_unknown_platform_is_refused_naming_the_allowed_ones():
    message = refused(with_backend(platform="lambda"))
    assert "backend.platform: must be one of 'apprunner', 'ecs-express' (got 'lambda')" in message


def test_app_runner_keys_are_refused_on_express_and_express_keys_on_app_runner():
    assert "backend.requests_per_target: unknown key" in refused(with_backend(requests_per_target=400))
    assert "backend.max_concurrency: unknown key" in refused(on_express(max_concurrency=200))


def test_a_backend_table_without_platform_is_app_runner():
    data = with_backend()
    data["backend"].pop("platform", None)
    assert parse_environment(data).backend.platform == APP_RUNNER
    no_table = environment_data("dev")
    no_table.pop("backend", None)
    assert parse_environment(no_table).backend.platform == APP_RUNNER


def test_express_defaults_are_one_vcpu_two_gib_and_bounded_streams():
    backend = parse_environment(on_express()).backend
    assert (backend.cpu, backend.memory) == ("1024", "2048")
    assert 120 < backend.sse_max_stream_seconds <= 900
    assert backend.requests_per_target * backend.sse_max_stream_seconds / 60 <= 2000  # p99 lateness < 25 ms


@pytest.mark.parametrize(("cpu", "memory"), [(c, m) for c, ms in FARGATE_SIZES.items() for m in (ms[0], ms[-1])])
def test_fargate_size_bounds_are_accepted(cpu, memory):
    assert parse_environment(on_express(cpu=cpu, memory=memory)).backend.memory == memory


@pytest.mark.parametrize("url", ["http://github.com/org/repo", "git@github.com:org/repo.git",
                                 "github.com/org/repo", "https://github.com/org"])
def test_non_https_repository_url_is_refused(url):
    data = environment_data("dev")
    data["frontend"]["repository"] = url
    message = refused(data)
    assert "frontend.repository" in message and "HTTPS repository URL like https://github.com/org/repo" in message


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("ecr_keep_images", 0, "greater than or equal to 1"),
    ("ecr_keep_images", 1001, "less than or equal to 1000"),
    ("artifact_expiration_days", 0, "greater than or equal to 1"),
    ("access_log_expiration_days", 4000, "less than or equal to 3650"),
])
def test_bad_bootstrap_settings_are_refused(field, value, expected):
    with pytest.raises(ValueError, match=f"{field}[\\s\\S]*{expected}"):
        AccountConfig.model_validate({"app_name": "adagency", "source_repository": "org/repo", field: value})
