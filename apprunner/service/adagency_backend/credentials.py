"""Database credentials read at runtime from the Aurora-managed secret, cached, re-read after rotation.

Why at runtime: App Runner resolves RuntimeEnvironmentSecrets only when it deploys, and Aurora rotates the
managed master password every 7 days, so an injected password goes stale. The secret's JSON is
`{"username": ..., "password": ...}`; host, port and database come from plain env vars.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from .logs import register_secret

log = logging.getLogger(__name__)

MIN_REFRESH_INTERVAL = 1.0  # never ask Secrets Manager more than once a second, whatever fails


class CredentialsError(RuntimeError):
    """The secret could not be read or does not have the expected shape (message holds no secret value)."""


@dataclass(frozen=True)
class DbCredentials:
    username: str
    password: str = field(repr=False)
    version_id: str = ""


class SecretsManagerCredentials:
    """`get()` returns the cached credentials; `refresh(stale)` re-reads after an authentication failure."""

    def __init__(self, secret_arn: str, region: str) -> None:
        self._secret_arn = secret_arn
        self._client = boto3.client(
            "secretsmanager", region_name=region,
            config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}))
        self._cached: DbCredentials | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.reads = 0  # how many times the secret was fetched (exposed for tests and metrics)

    async def get(self) -> DbCredentials:
        if self._cached is not None:
            return self._cached
        async with self._lock:
            if self._cached is None:
                self._cached = await self._fetch()
            return self._cached

    async def refresh(self, stale: DbCredentials | None) -> DbCredentials:
        """Re-read the secret unless another caller already replaced `stale` (one read per rotation)."""
        async with self._lock:
            if self._cached is not None and self._cached != stale:
                return self._cached
            wait = self._fetched_at + MIN_REFRESH_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._cached = await self._fetch()
            return self._cached

    async def _fetch(self) -> DbCredentials:
        try:
            resp = await asyncio.to_thread(self._client.get_secret_value, SecretId=self._secret_arn)
        except Exception as e:  # botocore errors carry no secret value
            raise CredentialsError(f"cannot read the database secret: {type(e).__name__}: {e}") from None
        finally:
            self._fetched_at = time.monotonic()
        try:
            doc = json.loads(resp["SecretString"])
            creds = DbCredentials(str(doc["username"]), str(doc["password"]), resp.get("VersionId", ""))
        except (KeyError, TypeError, ValueError):
            raise CredentialsError("the database secret is not JSON with 'username' and 'password'") from None
        register_secret(creds.password)
        self.reads += 1
        log.info("database secret loaded", extra={"secret_version": creds.version_id, "reads": self.reads})
        return creds
