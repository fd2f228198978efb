"""Show a stack operation's events (polled by `generator.deploy.stream`).

On a terminal: a rich Live table, one row per resource (its description from template metadata, not
its logical id), failure reasons indented under the row. Elsewhere: one plain line per event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from generator.deploy.stream import Event
from generator.deploy.templates import NESTED_STACK
from generator.deploy.ui import Ui


def status_style(status: str) -> str:
    if status.endswith("_FAILED") or "ROLLBACK" in status:
        return "bold red"
    if status.endswith("_COMPLETE"):
        return "green"
    return "yellow"


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


