"""The single boto3 session every AWS call of the deploy command goes through.

boto3 (>= 1.28) honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`) natively, so the tests
point the real command at a local moto server without any test hook in this code.
"""

from __future__ import annotations

import math
import os
from functools import cache

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling (describe_stack_events is rate-limited per account).
_CLIENT_CONFIG = Config(retries={"max_attempts": 8, "mode": "standard"}, user_agent_extra="adagency-deploy-kit")
# Advisory checks (a warning at most) must never slow a deploy down: one attempt, short timeouts.
_ADVISORY_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=10,
                          user_agent_extra="adagency-deploy-kit")
POLL_ENV = "ADKIT_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 5.0
TIMEOUT_ENV = "ADKIT_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 240.0   # an Aurora + App Runner + Amplify create takes well under an hour


class Aws:
    """One boto3 Session (profile + region) and its cached clients."""

    def __init__(self, profile: str | None, region: str) -> None:
        self.session = boto3.Session(profile_name=profile, region_name=region)
        self.profile = profile
        self.region = region
        self._client = cache(self._make_client)

    def _make_client(self, service: str, advisory: bool = False):
        return self.session.client(service, config=_ADVISORY_CONFIG if advisory else _CLIENT_CONFIG)

    def client(self, service: str):
        return self._client(service)

    def advisory_client(self, service: str):
        """Client for checks that only warn: no retries, short timeouts."""
        return self._client(service, True)

    @property
    def url_suffix(self) -> str:
        """Domain suffix of S3 URLs in this region's partition (amazonaws.com, amazonaws.com.cn)."""
        partition = self.session.get_partition_for_region(self.region)
        return "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"

    @property
    def endpoint_note(self) -> str:
        """Shown in headers so a run against a local server is never mistaken for a real one."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        return f" via {endpoint}" if endpoint else ""


def poll_seconds() -> float:
    """Seconds between CloudFormation polls (`ADKIT_POLL_SECONDS`, default 5)."""
    try:
        value = float(os.environ.get(POLL_ENV, DEFAULT_POLL_SECONDS))
    except ValueError:
        return DEFAULT_POLL_SECONDS
    if not math.isfinite(value):   # nan would make time.sleep fail, inf would never poll again
        return DEFAULT_POLL_SECONDS
    return min(max(value, 0.0), 60.0)


def timeout_seconds() -> float:
    """How long a command follows one stack operation before it stops watching (`ADKIT_TIMEOUT_MINUTES`,
    default 240). CloudFormation carries on without the command; the limit only stops an endless wait."""
    try:
        minutes = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_MINUTES))
    except ValueError:
        minutes = DEFAULT_TIMEOUT_MINUTES
    if not math.isfinite(minutes) or minutes <= 0:   # nan or inf would disable the limit, 0 would stop at once
        minutes = DEFAULT_TIMEOUT_MINUTES
    return minutes * 60
