"""PostgreSQL access: a pool whose connections survive password rotation, and numbered SQL migrations.

Every new connection takes the cached credentials; if PostgreSQL refuses them (SQLSTATE 28P01/28000,
"password authentication failed"), the secret is re-read and the connect retried with backoff. Pooled
connections are checked before use, so connections killed under us (failover, pg_terminate_backend,
an Aurora pause) are replaced transparently.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from .credentials import SecretsManagerCredentials
from .settings import Settings

log = logging.getLogger(__name__)

AUTH_SQLSTATES = frozenset({"28P01", "28000"})  # invalid_password, invalid_authorization_specification
AUTH_RETRY_DELAYS = (0.0, 0.5, 1.0, 2.0, 4.0)  # a rotation may briefly leave the secret ahead of the database
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 7_164_617_067  # pg_advisory_lock key: one migrator at a time across instances
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
CONNECT_TIMEOUT_SECONDS = 20  # > Aurora Serverless v2 resume-from-pause time (~15 s)


def is_auth_failure(exc: BaseException) -> bool:
    """True for a rejected login. libpq reports connect-time failures without a SQLSTATE, hence the text."""
    if getattr(exc, "sqlstate", None) in AUTH_SQLSTATES:
        return True
    return isinstance(exc, psycopg.OperationalError) and "authentication failed" in str(exc)


def rotating_connection_class(credentials: SecretsManagerCredentials) -> type[psycopg.AsyncConnection]:
    """An AsyncConnection whose connect() logs in with the current secret and re-reads it when refused."""

    class RotatingCredentialsConnection(psycopg.AsyncConnection):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs):
            creds = await credentials.get()
            for attempt, delay in enumerate(AUTH_RETRY_DELAYS):
                if delay:
                    await asyncio.sleep(delay)
                try:
                    return await super().connect(conninfo, user=creds.username, password=creds.password, **kwargs)
                except psycopg.OperationalError as e:
                    if not is_auth_failure(e) or attempt == len(AUTH_RETRY_DELAYS) - 1:
                        raise
                    log.warning("database refused the credentials; re-reading the secret",
                                extra={"attempt": attempt + 1, "secret_version": creds.version_id})
                    creds = await credentials.refresh(creds)
            raise AssertionError("unreachable")

    return RotatingCredentialsConnection


class Database:
    """The pool (opened by `open()`) plus a factory for dedicated connections (LISTEN, migrations)."""

    def __init__(self, settings: Settings, credentials: SecretsManagerCredentials, max_size: int = 10) -> None:
        self.conninfo = make_conninfo(
            host=settings.db_host, port=settings.db_port, dbname=settings.db_name, sslmode=settings.db_sslmode,
            connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="adagency-backend",
            keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        self.connection_class = rotating_connection_class(credentials)
        # min_size=0 and max_idle let the pool drain when idle, so an auto-pausing Aurora can pause.
        self.pool = AsyncConnectionPool(
            self.conninfo, connection_class=self.connection_class, kwargs={"row_factory": dict_row},
            min_size=0, max_size=max_size, open=False, timeout=15, max_idle=300, max_lifetime=3600,
            check=AsyncConnectionPool.check_connection, name="app")

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=5)

    async def connect(self, **kwargs) -> psycopg.AsyncConnection:
        """A dedicated connection outside the pool (caller closes it)."""
        return await self.connection_class.connect(self.conninfo, **kwargs)

    async def ping(self, timeout: float) -> None:
        async with asyncio.timeout(timeout), self.pool.connection(timeout=timeout) as conn:
            await conn.execute("SELECT 1")


def migration_files() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        if m := _MIGRATION_FILE.match(path.name):
            found.append((int(m.group(1)), path))
    versions = [v for v, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 0001.. without gaps, found {versions}")
    return found


async def migrate(db: Database) -> list[int]:
    """Apply pending migrations, each in its own transaction, under an advisory lock. Returns what ran."""
    applied_now = []
    conn = await db.connect(autocommit=True)
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                               "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, path in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                       (version, path.name))
                applied_now.append(version)
                log.info("migration applied", extra={"migration": path.name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied_now


async def migrate_with_retry(db: Database, deadline_seconds: float = 90) -> list[int]:
    """Startup: wait for the database (Aurora may be resuming) but fail the deployment if it never comes."""
    deadline = time.monotonic() + deadline_seconds
    delay = 0.5
    while True:
        try:
            return await migrate(db)
        except (psycopg.OperationalError, OSError) as e:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database not reachable yet; retrying", extra={"error": type(e).__name__,
                                                                        "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8)
