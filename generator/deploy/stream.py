"""Follow a stack operation: poll the events of the root and every nested stack, find root causes.

Polling only; what the operator sees is drawn by `generator.deploy.progress` (a view with `update(events,
stack_status)`), as copilot splits `stream/` from `term/progress/`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from generator.deploy import stacks
from generator.deploy.session import Aws, timeout_seconds
from generator.deploy.templates import NESTED_STACK

if TYPE_CHECKING:
    from generator.deploy.progress import LiveView, PlainView

NOISE_REASONS = ("Resource creation cancelled", "Resource update cancelled", "Embedded stack",
                 "The following resource(s) failed", "Rollback requested by user")



@dataclass(frozen=True)
class Event:
    id: str
    stack_label: str          # '' for the root, else the nested stack's logical-id path
    logical_id: str
    resource_type: str
    status: str
    reason: str
    timestamp: datetime
    description: str
    stack_level: bool         # the event is about a stack itself, not one of its resources

    @property
    def where(self) -> str:
        if self.stack_level:
            return self.stack_label or self.logical_id
        return f"{self.stack_label}/{self.logical_id}" if self.stack_label else self.logical_id

    @property
    def name(self) -> str:
        return f"{self.description} [{self.where}]" if self.description else self.where


class Watcher:
    """Collects new events (after `since`) of a stack and of the nested stacks it creates or updates."""

    def __init__(self, aws: Aws, stack_id: str, descriptions: dict[str, dict[str, str]],
                 since: datetime | None, seen: set[str] | None = None) -> None:
        self.aws = aws
        self.root_id = stack_id
        self.descriptions = descriptions
        self.since = since
        self.seen: set[str] = set(seen or ())
        self.labels: dict[str, str] = {stack_id: ""}          # physical id -> label
        self.active: dict[str, bool] = {stack_id: True}       # physical id -> still busy (else: one last poll)
        self.events: list[Event] = []

    def _page(self, physical_id: str) -> list[dict]:
        cfn = self.aws.client("cloudformation")
        found, token = [], None
        while True:
            try:
                page = cfn.describe_stack_events(StackName=physical_id, **({"NextToken": token} if token else {}))
            except Exception as exc:  # a nested stack deleted by a rollback: nothing more to read
                if "does not exist" in str(exc):
                    self.active.pop(physical_id, None)
                    return found
                raise
            for raw in page["StackEvents"]:
                if raw["EventId"] in self.seen or (self.since and raw["Timestamp"] < self.since):
                    return found
                found.append(raw)
            token = page.get("NextToken")
            if not token:
                return found

    def _convert(self, raw: dict, label: str) -> Event:
        stack_level = raw.get("PhysicalResourceId") == raw.get("StackId")
        lid = raw.get("LogicalResourceId", "")
        return Event(id=raw["EventId"], stack_label=label, logical_id=lid,
                     resource_type=raw.get("ResourceType", ""), status=raw.get("ResourceStatus", ""),
                     reason=raw.get("ResourceStatusReason") or "", timestamp=raw["Timestamp"],
                     description="" if stack_level else self.descriptions.get(label, {}).get(lid, ""),
                     stack_level=stack_level)

    def poll(self) -> list[Event]:
        new: list[Event] = []
        queue, polled = list(self.active), set()
        while queue:
            physical_id = queue.pop(0)
            if physical_id in polled or physical_id not in self.active:
                continue
            polled.add(physical_id)
            label = self.labels[physical_id]
            for raw in reversed(self._page(physical_id)):   # oldest first: the last event wins
                self.seen.add(raw["EventId"])
                event = self._convert(raw, label)
                new.append(event)
                child = raw.get("PhysicalResourceId")
                if event.resource_type == NESTED_STACK and not event.stack_level and child:
                    self.labels.setdefault(child, f"{label}/{event.logical_id}" if label else event.logical_id)
                    # poll a nested stack while its parent reports it busy, then once more
                    self.active[child] = event.status.endswith("_IN_PROGRESS")
                    queue.append(child)
            if physical_id != self.root_id and self.active.get(physical_id) is False:
                del self.active[physical_id]
        new.sort(key=lambda e: e.timestamp)
        self.events += new
        return new


def rollback_failures(events: list[Event]) -> list[Event]:
    """Resources that failed while the root stack was rolling back (what blocks UPDATE_ROLLBACK_FAILED)."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    start = next((e.timestamp for e in ordered if e.stack_level and not e.stack_label
                  and "ROLLBACK_IN_PROGRESS" in e.status), None)
    if start is None:
        return []
    unique: dict[str, Event] = {}
    for event in ordered:
        if event.timestamp >= start and event.status.endswith("_FAILED") and not event.stack_level \
                and event.resource_type != NESTED_STACK:
            unique.setdefault(event.where, event)
    return list(unique.values())


def root_causes(events: list[Event], limit: int = 3) -> list[Event]:
    """The earliest failures with a real reason (not 'cancelled' or 'embedded stack failed' echoes)."""
    failed = sorted((e for e in events if e.status.endswith("_FAILED")), key=lambda e: e.timestamp)
    real = [e for e in failed if e.reason and not any(n in e.reason for n in NOISE_REASONS)
            and not e.stack_level]
    unique: dict[tuple[str, str, str], Event] = {}
    for event in real or failed:
        unique.setdefault((event.where, event.status, event.reason), event)
    return list(unique.values())[:limit]


class WatchTimeout(Exception):
    """The operation was still running when the watch's time limit ran out."""

    def __init__(self, status: str, minutes: float) -> None:
        super().__init__(f"still {status} after {minutes:.0f} minutes")
        self.status, self.minutes = status, minutes


def watch(aws: Aws, watcher: Watcher, view: PlainView | LiveView, poll: float, quiet_limit: float = 60,
          timeout: float | None = None) -> dict | None:
    """Follow the operation until the root stack leaves *_IN_PROGRESS; returns the final stack (None: gone).

    A final status only counts once the operation has visibly started (an IN_PROGRESS status or a new
    event), so a status read just before CloudFormation picks the operation up is never taken as its end.
    UPDATE_COMPLETE_CLEANUP_IN_PROGRESS and REVIEW_IN_PROGRESS are still in progress. After `timeout`
    seconds (default `ADKIT_TIMEOUT_MINUTES`) it raises WatchTimeout instead of waiting forever.
    """
    limit = timeout_seconds() if timeout is None else timeout
    started, quiet_since = False, time.monotonic()
    deadline = quiet_since + limit
    with view:
        while True:
            stack = stacks.describe(aws, watcher.root_id)
            status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
            new = watcher.poll()
            view.update(new, status)
            started = started or bool(new) or status.endswith("_IN_PROGRESS")
            settled = stack is None or not status.endswith("_IN_PROGRESS")
            if settled and (started or time.monotonic() - quiet_since > quiet_limit):
                view.update(watcher.poll(), status)   # events written just before the final status
                return stack
            if time.monotonic() >= deadline:
                raise WatchTimeout(status, limit / 60)
            time.sleep(poll)


def latest_event(aws: Aws, stack_id: str) -> tuple[datetime | None, set[str]]:
    """Timestamp and ids of the newest events, so a watch starting now shows only what follows."""
    page = aws.client("cloudformation").describe_stack_events(StackName=stack_id)["StackEvents"]
    if not page:
        return None, set()
    return page[0]["Timestamp"], {e["EventId"] for e in page}
