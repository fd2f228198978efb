"""`adkit logs ENV`: the environment's CloudWatch Logs, newest last, one line per event with time and source.

Log groups come from the deployed stacks, not from guessed names:
- backend: App Runner writes `/aws/apprunner/<service name>/<service id>/application`; name and id come from the
  service ARN (root output `BackendServiceArn`, or the `AWS::AppRunner::Service` resource). A backend platform
  with its own `AWS::Logs::LogGroup` in the Backend stack (ECS) contributes that group instead.
- waf: the `aws-waf-logs-*` group of the web ACL's logging configuration.
- database: Aurora's exported `/aws/rds/cluster/<id>/postgresql` group.
- worker: log groups of a nested stack whose name says Worker (issue 13's worker stack).
`--follow` polls FilterLogEvents every few seconds until Ctrl-C (exit 130): polling works through every
proxy and IAM policy that allows reading logs (StartLiveTail needs `logs:StartLiveTail` and an HTTP/2 event
stream, and stops after 3 hours).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from generator.deploy.errors import UsageError
from generator.deploy.session import Aws
from generator.ops.inventory import Inventory

COMPONENTS = ("backend", "worker", "database", "waf")
LOG_GROUP = "AWS::Logs::LogGroup"
_SINCE = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_APP_RUNNER_ARN = re.compile(r"arn:[^:]+:apprunner:[^:]+:\d+:service/([^/]+)/([^/]+)$")


@dataclass(frozen=True)
class Source:
    component: str      # backend, worker, database, waf
    group: str          # log group name


@dataclass(frozen=True)
class LogEvent:
    timestamp: int      # milliseconds since the epoch
    component: str
    stream: str
    message: str
    event_id: str

    def line(self) -> str:
        when = datetime.fromtimestamp(self.timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        stream = self.stream.rsplit("/", 1)[-1][:12]
        return f"{when}  {self.component:<8} {stream:<12} {self.message.rstrip()}"


def since_millis(text: str, now: datetime | None = None) -> int:
    """`--since`: a duration (`90s`, `15m`, `1h`, `2d`) or an ISO 8601 time; milliseconds since the epoch.

    Raises UsageError for anything else."""
    now = now or datetime.now(UTC)
    found = _SINCE.fullmatch(text.strip())
    if found:
        return int((now.timestamp() - int(found.group(1)) * _UNIT_SECONDS[found.group(2)]) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r} not understood", "it takes a duration (30s, 15m, 1h, 2d) or an "
                         "ISO 8601 time (2026-05-01T12:00:00Z)", "e.g. --since 1h") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def app_runner_group(service_arn: str) -> str | None:
    """App Runner's application log group for a service ARN (None if it is not an App Runner service ARN).
    https://docs.aws.amazon.com/apprunner/latest/dg/monitor-cwl.html"""
    found = _APP_RUNNER_ARN.match(service_arn or "")
    return f"/aws/apprunner/{found.group(1)}/{found.group(2)}/application" if found else None


def sources(inventory: Inventory) -> list[Source]:
    """Every log source of a deployed environment, in COMPONENTS order."""
    result: list[Source] = []
    arns = [inventory.outputs.get("BackendServiceArn", "")]
    arns += [r.physical_id for r in inventory.of_type("AWS::AppRunner::Service")]
    for arn in arns:
        group = app_runner_group(arn)
        if group and Source("backend", group) not in result:
            result.append(Source("backend", group))
    for res in inventory.of_type(LOG_GROUP):
        name, stack = res.physical_id, res.stack_label.lower()
        if name.startswith("aws-waf-logs-"):
            result.append(Source("waf", name))
        elif name.startswith("/aws/rds/cluster/"):
            result.append(Source("database", name))
        elif name.startswith(("/aws/lambda/", "/aws/vpc", "/aws/amplify")) or any(
                part in name.lower() for part in ("function", "flowlog")):
            continue   # helper functions (CloudFormation names their groups after the logical id) and flow logs
        elif "worker" in stack:
            result.append(Source("worker", name))
        elif stack.endswith("backend") and not any(s.component == "backend" for s in result):
            result.append(Source("backend", name))   # a platform that brings its own group (ECS)
    return sorted(result, key=lambda s: (COMPONENTS.index(s.component), s.group))


def fetch(aws: Aws, chosen: Iterable[Source], start: int, pattern: str | None = None,
          missing: Callable[[Source], None] | None = None) -> list[LogEvent]:
    """FilterLogEvents over every source from `start` (ms) on, merged and sorted oldest first.

    `pattern` is a CloudWatch Logs filter pattern (plain text matches terms). A group that does not exist
    yet (App Runner creates its groups with the first instance) is reported to `missing` and skipped."""
    logs = aws.client("logs")
    events: list[LogEvent] = []
    for source in chosen:
        kwargs = {"logGroupName": source.group, "startTime": start, **({"filterPattern": pattern} if pattern else {})}
        try:
            for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
                events += [LogEvent(e["timestamp"], source.component, e.get("logStreamName", ""), e["message"],
                                    e["eventId"]) for e in page.get("events", [])]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            if missing:
                missing(source)
    return sorted(events, key=lambda e: (e.timestamp, e.component, e.event_id))


def follow(aws: Aws, chosen: list[Source], start: int, pattern: str | None, emit: Callable[[LogEvent], None],
           poll: float, shown: Iterable[LogEvent] = ()) -> None:
    """Emit new events as they arrive, polling every `poll` seconds, until KeyboardInterrupt (raised on).
    Each poll re-reads the last 5 seconds (events can arrive late); `shown` events are not emitted again."""
    seen = {e.event_id: e.timestamp for e in shown}
    while True:
        time.sleep(poll)
        batch = [e for e in fetch(aws, chosen, start, pattern) if e.event_id not in seen]
        for event in batch:
            seen[event.event_id] = event.timestamp
            emit(event)
        if seen:
            start = max(start, max(seen.values()) - 5000)
            seen = {k: v for k, v in seen.items() if v >= start}
