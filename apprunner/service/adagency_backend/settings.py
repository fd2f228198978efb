"""Settings, read only from the app-contract environment variables (see generator/contract.py).

The backend stack renders exactly CONTRACT_VARIABLES and CONTRACT_SECRETS into the App Runner service;
the contract test starts this service with exactly the names it finds in the rendered template.
A few tuning knobs (TUNING_VARIABLES) are optional and default to production values.

Runs: the API accepts runs only when RUN_QUEUE_URL (RUNS_VARIABLES) is set. The worker
(`python -m adagency_backend worker`) reads WORKER_VARIABLES and the Gemini key through
`load_worker_settings`; WORKER_TUNING_VARIABLES choose the model (tests use the deterministic fake).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CONTRACT_VARIABLES = (
    "APP_ENVIRONMENT", "APP_REGION", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SECRET_ARN", "DB_SSLMODE",
    "CONTENT_BUCKET", "CORS_ALLOWED_ORIGINS", "SSE_MAX_STREAM_SECONDS",
)
CONTRACT_SECRETS = ("GEMINI_API_KEY",)
PORT_VARIABLE = "PORT"  # set by App Runner from the service's port; 8080 by default
TUNING_VARIABLES = ("SSE_HEARTBEAT_SECONDS", "UPLOAD_MAX_BYTES", "LOG_LEVEL", "BIND_ADDRESS")
RUNS_VARIABLES = ("RUN_QUEUE_URL",)  # optional for the API: without it POST /projects/{id}/runs answers 503
WORKER_VARIABLES = (
    "APP_ENVIRONMENT", "APP_REGION", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SECRET_ARN", "DB_SSLMODE",
    "CONTENT_BUCKET", "RUN_QUEUE_URL", "WORKER_VISIBILITY_TIMEOUT_SECONDS", "WORKER_STOP_TIMEOUT_SECONDS",
    "WORKER_MAX_RECEIVE_COUNT",
)
WORKER_SECRETS = ("GEMINI_API_KEY",)
WORKER_TUNING_VARIABLES = ("WORKER_MODEL", "GEMINI_MODEL", "WORKER_FAKE_MODEL_DIR", "LOG_LEVEL")
WORKER_MODELS = ("gemini", "fake")
ECS_MAX_STOP_TIMEOUT_SECONDS = 120  # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html
SQS_MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200  # 12 h: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html
SQS_MAX_RECEIVE_COUNT = 1000  # redrive maxReceiveCount 1-1000: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html

APP_RUNNER_REQUEST_LIMIT_SECONDS = 120
# The deploy kit sets the per-platform limit (App Runner: <= 110 s under its hard 120 s request limit; ECS
# Express behind an ALB: <= 900 s); the service only refuses nonsense.
MAX_STREAM_SECONDS_CEILING = 900
TLS_SSLMODES = ("require", "verify-ca", "verify-full")  # the cluster refuses plaintext; so do we
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_GEMINI_MODEL = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
_ORIGIN_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")
_LOCAL_HOSTS = ("localhost", "127.0.0.1")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """Invalid or missing settings; the message names variables, never their values."""


class Secret(str):
    """A string that never shows its value in repr() (and so not in tracebacks or debug logs)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True)
class Settings:
    environment: str
    region: str
    db_host: str
    db_port: int
    db_name: str
    db_secret_arn: str
    db_sslmode: str
    content_bucket: str
    cors_origins: tuple[str, ...]
    sse_max_stream_seconds: float
    gemini_api_key: Secret = field(repr=False)
    port: int = 8080
    bind_address: str = "0.0.0.0"  # App Runner reaches the container on its interface
    sse_heartbeat_seconds: float = 15.0
    upload_max_bytes: int = 25 * 1024 * 1024
    log_level: str = "INFO"
    run_queue_url: str = ""  # empty: this process accepts no runs (POST /projects/{id}/runs answers 503)

    @property
    def gemini_configured(self) -> bool:
        return bool(self.gemini_api_key)


@dataclass(frozen=True)
class WorkerSettings:
    """What `python -m adagency_backend worker` needs; `base` carries the shared database/AWS settings."""

    base: Settings
    visibility_timeout_seconds: int
    stop_timeout_seconds: float
    max_receive_count: int
    model: str = "gemini"  # "gemini" (needs GEMINI_API_KEY) or "fake" (deterministic, no network)
    gemini_model: str = "gemini-2.5-flash"
    fake_model_dir: str = ""  # fake model only: where it counts its calls (and the tests' block/release files)

    @property
    def queue_url(self) -> str:
        return self.base.run_queue_url


def parse_origins(raw: str) -> tuple[str, ...]:
    """Comma-separated exact origins; https only (http for localhost), no paths, no wildcards."""
    origins = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        host = parts.hostname or ""
        ok_scheme = parts.scheme == "https" or (parts.scheme == "http" and host in _LOCAL_HOSTS)
        if not ok_scheme or not _ORIGIN_HOST.match(host) or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username or parts.password:
            raise SettingsError(f"CORS_ALLOWED_ORIGINS: {item!r} is not an https origin (scheme://host[:port])")
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(origins)


def parse_queue_url(raw: str) -> str:
    """An SQS queue URL (https; http only for a local endpoint): scheme://host/account/name."""
    raw = raw.strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    host = parts.hostname or ""
    ok_scheme = parts.scheme == "https" or (parts.scheme == "http" and host in _LOCAL_HOSTS)
    if not ok_scheme or not _ORIGIN_HOST.match(host) or parts.path.count("/") != 2 or parts.query \
            or parts.fragment or parts.username or parts.password:
        raise SettingsError("RUN_QUEUE_URL: must be an SQS queue URL "
                            "(https://sqs.<region>.amazonaws.com/<account>/<name>)")
    return raw


def _number(env: Mapping[str, str], name: str, default: str, low: float, high: float, kind=float):
    raw = env.get(name, default).strip()
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}: must be between {low} and {high}")
    return value


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate the environment; raise SettingsError naming every problem at once."""
    missing = [n for n in CONTRACT_VARIABLES if not env.get(n, "").strip() and n != "CORS_ALLOWED_ORIGINS"]
    missing += [n for n in ("CORS_ALLOWED_ORIGINS",) if n not in env]
    if missing:
        raise SettingsError(f"missing required environment variables: {', '.join(missing)}")
    for name in ("APP_ENVIRONMENT", "APP_REGION", "DB_NAME"):
        if not _NAME.match(env[name].strip()):
            raise SettingsError(f"{name}: must match {_NAME.pattern}")
    sslmode = env["DB_SSLMODE"].strip()
    if sslmode not in TLS_SSLMODES:
        raise SettingsError(f"DB_SSLMODE: must be one of {', '.join(TLS_SSLMODES)}")
    if env.get("LOG_LEVEL", "INFO").strip().upper() not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}")
    if not env["DB_SECRET_ARN"].strip().startswith("arn:"):
        raise SettingsError("DB_SECRET_ARN: must be a Secrets Manager secret ARN")
    return Settings(
        environment=env["APP_ENVIRONMENT"].strip(),
        region=env["APP_REGION"].strip(),
        db_host=env["DB_HOST"].strip(),
        db_port=_number(env, "DB_PORT", "5432", 1, 65535, int),
        db_name=env["DB_NAME"].strip(),
        db_secret_arn=env["DB_SECRET_ARN"].strip(),
        db_sslmode=sslmode,
        content_bucket=env["CONTENT_BUCKET"].strip(),
        cors_origins=parse_origins(env["CORS_ALLOWED_ORIGINS"]),
        sse_max_stream_seconds=_number(env, "SSE_MAX_STREAM_SECONDS", "100", 1, MAX_STREAM_SECONDS_CEILING),
        gemini_api_key=Secret(env.get("GEMINI_API_KEY", "").strip()),
        port=_number(env, PORT_VARIABLE, "8080", 1, 65535, int),
        bind_address=env.get("BIND_ADDRESS", "0.0.0.0").strip(),
        sse_heartbeat_seconds=_number(env, "SSE_HEARTBEAT_SECONDS", "15", 0.2, 60),
        upload_max_bytes=_number(env, "UPLOAD_MAX_BYTES", str(25 * 1024 * 1024), 1, 5 * 1024**3, int),
        log_level=env.get("LOG_LEVEL", "INFO").strip().upper(),
        run_queue_url=parse_queue_url(env.get("RUN_QUEUE_URL", "")),
    )


def load_worker_settings(env: Mapping[str, str]) -> WorkerSettings:
    """Validate the worker's environment (WORKER_VARIABLES); raise SettingsError naming the variables.

    The API-only names (CORS_ALLOWED_ORIGINS, SSE_MAX_STREAM_SECONDS) are not needed by the worker.
    """
    missing = [n for n in WORKER_VARIABLES if not env.get(n, "").strip()]
    if missing:
        raise SettingsError(f"missing required environment variables: {', '.join(missing)}")
    base = load_settings({"CORS_ALLOWED_ORIGINS": "", "SSE_MAX_STREAM_SECONDS": "100", **env})
    model = env.get("WORKER_MODEL", "gemini").strip().lower()
    if model not in WORKER_MODELS:
        raise SettingsError(f"WORKER_MODEL: must be one of {', '.join(WORKER_MODELS)}")
    gemini_model = env.get("GEMINI_MODEL", "gemini-2.5-flash").strip()
    if not _GEMINI_MODEL.match(gemini_model):
        raise SettingsError(f"GEMINI_MODEL: must match {_GEMINI_MODEL.pattern}")
    return WorkerSettings(
        base=base,
        visibility_timeout_seconds=_number(env, "WORKER_VISIBILITY_TIMEOUT_SECONDS", "", 2,
                                           SQS_MAX_VISIBILITY_TIMEOUT_SECONDS, int),
        stop_timeout_seconds=_number(env, "WORKER_STOP_TIMEOUT_SECONDS", "", 1, ECS_MAX_STOP_TIMEOUT_SECONDS),
        max_receive_count=_number(env, "WORKER_MAX_RECEIVE_COUNT", "", 1, SQS_MAX_RECEIVE_COUNT, int),
        model=model,
        gemini_model=gemini_model,
        fake_model_dir=env.get("WORKER_FAKE_MODEL_DIR", "").strip(),
    )
