"""Watch a stack operation: poll the events of the root and every nested stack, show them, find root causes.

On a terminal: a rich Live table, one row per resource (its description from template metadata, not
its logical id), failure reasons indented under the row. Elsewhere: one plain line per event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from rich.console import Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from generator.deploy import stacks
from generator.deploy.session import Aws, timeout_seconds
from generator.deploy.templates import NESTED_STACK
from generator.deploy.ui import Ui

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


def status_style(status: str) -> str:
    if status.endswith("_FAILED") or "ROLLBACK" in status:
        return "bold red"
    if status.endswith("_COMPLETE"):
        return "green"
    return "yellow"


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


class PlainView:
    """One line per event, for logs and pipes."""

    def __init__(self, ui: Ui, stack_name: str) -> None:
        self.ui = ui
        self.stack_name = stack_name

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, events: list[Event], stack_status: str) -> None:
        for e in events:
            if e.stack_level and e.stack_label:
                continue  # a nested stack's own events echo its row in the parent
            where = self.stack_name if e.stack_level else e.name
            kind = "" if e.stack_level else f" ({e.resource_type})"
            reason = f": {e.reason}" if e.reason else ""
            self.ui.info(f"{e.timestamp:%H:%M:%S}  {e.status:<28} {where}{kind}{reason}", status_style(e.status))


@dataclass(frozen=True)
class Row:
    """One line of the live view (plus the failure reason on a second line, when there is one)."""

    stack: str
    resource: str
    status: str
    reason: str = ""
    busy: bool = False

    @property
    def height(self) -> int:
        return 2 if self.reason else 1


def _failed(status: str) -> bool:
    return status.endswith("_FAILED")


def _path(label: str, logical_id: str) -> str:
    return f"{label}/{logical_id}" if label else logical_id


def fit_rows(latest: list[Event], budget: int, final: bool = False) -> tuple[list[Row], int]:
    """The rows that matter during a long operation, in at most `budget` lines.

    `latest`: the newest event of each resource. Order: failed rows (earliest first: the root cause
    leads), then rows in progress, then one line per finished nested stack (its resources collapsed),
    then the other finished rows, newest first. Returns (rows, number of rows left out); the caller
    shows "... N more" for the ones left out. Pure: no I/O, so it is tested at any size.
    """
    nested_status = {_path(e.stack_label, e.logical_id): e.status for e in latest
                     if e.resource_type == NESTED_STACK}
    busy_or_failed = {e.stack_label for e in latest
                      if _failed(e.status) or (e.status.endswith("_IN_PROGRESS") and not final)}

    def collapsible(path: str) -> bool:
        status = nested_status.get(path, "")
        return (status.endswith("_COMPLETE") and "ROLLBACK" not in status
                and not any(label == path or label.startswith(path + "/") for label in busy_or_failed))

    def outermost_collapsed(label: str) -> str | None:
        parts = label.split("/") if label else []
        for i in range(1, len(parts) + 1):
            if collapsible("/".join(parts[:i])):
                return "/".join(parts[:i])
        return None

    def row(e: Event, busy: bool = False) -> Row:
        reason = e.reason if (_failed(e.status) or "ROLLBACK" in e.status) and e.reason else ""
        return Row(e.stack_label or "root", e.description or e.logical_id, e.status, reason, busy)

    failed = sorted((e for e in latest if _failed(e.status)), key=lambda e: e.timestamp)
    running = sorted((e for e in latest if e.status.endswith("_IN_PROGRESS") and not _failed(e.status)
                      and not final), key=lambda e: e.timestamp)
    counted = {id(e) for e in failed + running}
    groups: dict[str, int] = {}
    finished: list[Event] = []
    for e in latest:
        if id(e) in counted:
            continue
        path = _path(e.stack_label, e.logical_id)
        group = outermost_collapsed(e.stack_label) or (path if e.resource_type == NESTED_STACK
                                                      and collapsible(path) else None)
        if group is None:
            finished.append(e)
        else:
            groups[group] = groups.get(group, 0) + (0 if path == group else 1)
    collapsed = [Row(group.rsplit("/", 1)[0] if "/" in group else "root",
                     f"{group} (nested stack, {count} resource{'s' * (count != 1)})", nested_status[group])
                 for group, count in sorted(groups.items())]
    ordered = ([row(e) for e in failed] + [row(e, busy=True) for e in running] + collapsed
               + [row(e) for e in sorted(finished, key=lambda e: e.timestamp, reverse=True)])
    shown: list[Row] = []
    used = 0
    for index, item in enumerate(ordered):
        left = len(ordered) - index - 1
        room = budget - used - (1 if left else 0)   # keep a line for "... N more"
        if item.height > room:
            if item.reason and room >= 1:            # a failure without its reason still beats no row
                item = Row(item.stack, item.resource, item.status, "", item.busy)
            else:
                return shown, len(ordered) - index
        shown.append(item)
        used += item.height
    return shown, 0


class LiveView:
    """A rich Live table that fits the terminal: failures and rows in progress first, finished nested
    stacks collapsed to one line each, never taller than the terminal (so nothing that matters is cropped)."""

    def __init__(self, ui: Ui, stack_name: str) -> None:
        self.ui = ui
        self.stack_name = stack_name
        self.rows: dict[tuple[str, str], Event] = {}
        self.stack_status = ""
        self.started = time.monotonic()
        self.live = Live(console=ui.err, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        self.live.update(self._render())
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._render(final=True))
        self.live.__exit__(None, None, None)

    def update(self, events: list[Event], stack_status: str) -> None:
        self.stack_status = stack_status or self.stack_status
        for e in events:
            if not e.stack_level:
                self.rows[(e.stack_label, e.logical_id)] = e
        self.live.update(self._render())

    def _render(self, final: bool = False, height: int | None = None):
        """Title, header and rows in at most `height` lines (default: the terminal's height)."""
        height = height or self.ui.err.size.height
        elapsed = int(time.monotonic() - self.started)
        title = Text(f"{self.stack_name}  ", style="bold") + Text(self.stack_status or "starting",
                                                                    style=status_style(self.stack_status))
        title += Text(f"  {elapsed // 60}m{elapsed % 60:02d}s  ({len(self.rows)} resources)")
        table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        table.add_column("stack", style="dim", no_wrap=True, overflow="ellipsis", max_width=28)
        table.add_column("resource", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("status", no_wrap=True)
        # title + table header + one spare line (rich Live keeps the cursor below the last line)
        rows, hidden = fit_rows(list(self.rows.values()), max(height - 3, 1), final)
        for item in rows:
            style = status_style(item.status)
            status = Spinner("dots", text=Text(item.status, style=style)) if item.busy and not final \
                else Text(item.status, style=style)
            resource = Text(item.resource)
            if item.reason:
                resource += Text("\n  " + item.reason.splitlines()[0], style="red")
            table.add_row(item.stack, resource, status)
        if hidden:
            table.add_row("", Text(f"... {hidden} more row{'s' * (hidden != 1)}", style="dim"), "")
        return Group(title, table)


def view_for(ui: Ui, stack_name: str) -> PlainView | LiveView:
    return LiveView(ui, stack_name) if ui.tty else PlainView(ui, stack_name)


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
