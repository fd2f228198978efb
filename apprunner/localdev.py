"""Throwaway local stand-ins for what App Runner gives the service: PostgreSQL (TLS on), S3 + Secrets Manager.

Used by the contract tests, the SSE benchmark, and `python apprunner/localdev.py` (run the service locally).
Nothing here ships in the image. Everything binds to 127.0.0.1 and is deleted on exit.

- `LocalPostgres`: a cluster from Debian's `postgresql` package in a temp dir, self-signed TLS, password
  (scram) auth over TCP, a database owned by a non-superuser app role, admin over a private unix socket.
- `LocalAws`: moto's threaded server for S3, Secrets Manager and SQS; creates the content bucket, the
  Aurora-style DB secret (`{"username": ..., "password": ...}`) and, on request, a run queue with its DLQ.
- `start_service`: runs `python -m adagency_backend` (the image's entrypoint) with a given environment;
  `start_worker`: runs `python -m adagency_backend worker` (the worker service's command).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parent / "service"
REGION = "us-east-1"
APP_USER = "app_user"
DB_NAME = "app"
BUCKET = "adagency-test-content"
SECRET_NAME = "adagency/test/db"  # the real one is created by RDS (ManageMasterUserPassword)
INSTALL_HINT = "apt-get install -y postgresql openssl   (Debian/Ubuntu)"


def find_pg_bin() -> Path | None:
    """Directory with initdb/pg_ctl from the newest installed PostgreSQL, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class LocalPostgres:
    """A throwaway PostgreSQL cluster: `with LocalPostgres() as pg: ...`."""

    max_connections: int = 100
    port: int = 0
    password: str = field(default_factory=new_password)
    root: Path | None = None
    _as_user: list[str] = field(default_factory=list)

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "sock"

    def _run(self, *args: str | Path, **kw) -> subprocess.CompletedProcess:
        cmd = [*self._as_user, *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(cmd[len(self._as_user)]).name} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc

    def start(self) -> None:
        bindir = find_pg_bin()
        if bindir is None:
            raise RuntimeError(f"PostgreSQL server binaries not found; install them: {INSTALL_HINT}")
        self.root = Path(tempfile.mkdtemp(prefix="adagency-pg-"))
        owner = None
        if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as the `postgres` user
            owner = pwd.getpwnam("postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.socket_dir.mkdir()
        data = self.root / "data"
        key, cert = self.root / "server.key", self.root / "server.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        key.chmod(0o600)
        if owner:
            for p in (self.root, self.socket_dir, key, cert):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        self._run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync")
        # TCP only with TLS and a password (as on Aurora with rds.force_ssl); admin only over the unix socket.
        (data / "pg_hba.conf").write_text(
            "local all postgres trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        self.port = self.port or free_port()
        opts = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c ssl=on "
                f"-c ssl_cert_file={cert} -c ssl_key_file={key} -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -c max_connections={self.max_connections}")
        self._run(bindir / "pg_ctl", "-D", data, "-l", self.root / "postgres.log", "-o", opts, "-w", "start")
        self.admin_sql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{self.password}'")
        self.admin_sql(f"CREATE DATABASE {DB_NAME} OWNER {APP_USER}")

    def admin_sql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL as the superuser over the private unix socket; returns psql's unaligned output."""
        bindir = find_pg_bin()
        assert bindir is not None
        out = self._run(bindir / "psql", "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres",
                        "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql)
        return out.stdout.strip()

    def set_password(self, password: str) -> None:
        """Rotate the app role's password the way Secrets Manager rotation does (ALTER ROLE)."""
        self.password = password
        self.admin_sql(f"ALTER ROLE {APP_USER} PASSWORD '{password}'")

    def terminate_app_connections(self) -> int:
        """Kill every backend of the app role (forces the service to reconnect); returns how many."""
        out = self.admin_sql(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             f"WHERE usename = '{APP_USER}'")
        return int(out or 0)

    def stop(self) -> None:
        if self.root is None:
            return
        bindir = find_pg_bin()
        if bindir and (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, RuntimeError):
                self._run(bindir / "pg_ctl", "-D", self.root / "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


class LocalAws:
    """moto's server on 127.0.0.1 (free port) with the content bucket and the DB secret."""

    def __init__(self) -> None:
        self.server = None
        self.endpoint = ""
        self.secret_arn = ""
        self.run_queue_url = ""  # the queue contract_values() hands out as RUN_QUEUE_URL

    def __enter__(self) -> LocalAws:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def start(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client("s3").create_bucket(Bucket=BUCKET)

    def create_db_secret(self, password: str) -> str:
        """The DB secret with `password` as its current value. moto keeps one state per process, shared by every
        local server in it, so a second harness in the same test run finds the secret and sets a new value."""
        secrets = self.client("secretsmanager")
        value = json.dumps({"username": APP_USER, "password": password})
        try:
            self.secret_arn = secrets.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"]
        except secrets.exceptions.ResourceExistsException:
            self.secret_arn = secrets.put_secret_value(SecretId=SECRET_NAME, SecretString=value)["ARN"]
        return self.secret_arn

    def create_run_queue(self, name: str = "runs", visibility_timeout: int = 30,
                         max_receive_count: int = 3) -> tuple[str, str]:
        """A run queue whose redrive policy moves a message to its dead-letter queue after N receives."""
        sqs = self.client("sqs")
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        })["QueueUrl"]
        return queue, dlq

    def rotate_db_secret(self, password: str) -> None:
        self.client("secretsmanager").put_secret_value(
            SecretId=self.secret_arn, SecretString=json.dumps({"username": APP_USER, "password": password}))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def aws_env(aws: LocalAws) -> dict[str, str]:
    """Standard AWS SDK variables pointing boto3 at the local server (never real credentials)."""
    return {"AWS_ENDPOINT_URL": aws.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true"}


def contract_values(pg: LocalPostgres, aws: LocalAws, **overrides: str) -> dict[str, str]:
    """Values for every app-contract variable, pointing at the local servers."""
    values = {
        "APP_ENVIRONMENT": "local",
        "APP_REGION": REGION,
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(pg.port),
        "DB_NAME": DB_NAME,
        "DB_SECRET_ARN": aws.secret_arn,
        "DB_SSLMODE": "require",
        "CONTENT_BUCKET": BUCKET,
        "CORS_ALLOWED_ORIGINS": "http://localhost:3000",
        "SSE_MAX_STREAM_SECONDS": "100",
        "GEMINI_API_KEY": "local-dummy-gemini-key",
        "RUN_QUEUE_URL": aws.run_queue_url,
    }
    values.update(overrides)
    return values


def base_process_env() -> dict[str, str]:
    """The minimum a Python subprocess needs, without inheriting the caller's AWS or DB settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = str(SERVICE_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_http_ok(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def start_service(env: dict[str, str], log_path: Path, timeout: float = 30,
                  service_dir: Path = SERVICE_DIR) -> tuple[subprocess.Popen, str]:
    """Start the service exactly as the image does (`python -m adagency_backend`); returns (process, base url).

    `service_dir` holds the `adagency_backend` package to run (another checkout's, for side-by-side benchmarks).
    """
    port = env.get("PORT") or str(free_port())
    env = {**base_process_env(), **env, "PORT": port, "PYTHONPATH": str(service_dir)}
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child; closed when the file object is collected
    proc = subprocess.Popen([sys.executable, "-m", "adagency_backend"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=service_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/healthz", timeout, proc)
    except Exception:
        proc.kill()
        proc.wait(10)
        raise
    return proc, base


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start the worker as the worker service does (`python -m adagency_backend worker`)."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child; closed when the file object is collected
    return subprocess.Popen([sys.executable, "-m", "adagency_backend", "worker"], env={**base_process_env(), **env},
                            stdout=log, stderr=subprocess.STDOUT, cwd=SERVICE_DIR)


def worker_values(pg: LocalPostgres, aws: LocalAws, **overrides: str) -> dict[str, str]:
    """The worker's variables (its contract names plus the deterministic model) pointing at the local servers."""
    values = contract_values(pg, aws)
    names = ("APP_ENVIRONMENT", "APP_REGION", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SECRET_ARN", "DB_SSLMODE",
             "CONTENT_BUCKET", "RUN_QUEUE_URL", "GEMINI_API_KEY")
    env = {name: values[name] for name in names}
    env.update({"WORKER_VISIBILITY_TIMEOUT_SECONDS": "30", "WORKER_STOP_TIMEOUT_SECONDS": "10",
                "WORKER_MAX_RECEIVE_COUNT": "3", "WORKER_MODEL": "fake"})
    env.update(overrides)
    return env


def stop_service(proc: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM (what App Runner sends), then wait; kill if it does not stop in time. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def main() -> int:
    """Run the service and a worker (fake model) locally against throwaway PostgreSQL + moto until Ctrl-C."""
    port = os.environ.get("PORT", "8080")
    with LocalPostgres() as pg, LocalAws() as aws:
        aws.create_db_secret(pg.password)
        aws.run_queue_url, _ = aws.create_run_queue()
        env = {**aws_env(aws), **contract_values(pg, aws), "PORT": port, "BIND_ADDRESS": "127.0.0.1"}
        log_path = Path(pg.root or tempfile.gettempdir()) / "service.log"
        worker_log = log_path.with_name("worker.log")
        proc, base = start_service(env, log_path)
        worker = start_worker({**aws_env(aws), **worker_values(pg, aws)}, worker_log)
        print(f"service: {base}  (docs: {base}/docs, logs: {log_path}; worker logs: {worker_log})\n"
              "Ctrl-C to stop", flush=True)
        try:
            proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop_service(worker)
            stop_service(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
