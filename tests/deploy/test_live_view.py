"""The live view fits the terminal: at 134 resources in a 30-line terminal, failures and rows in progress show,
finished nested stacks collapse to one line each, and nothing is taller than the terminal."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from generator.deploy import progress, stream
from generator.deploy.templates import NESTED_STACK
from generator.deploy.ui import Ui

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HEIGHT = 30


def _event(label, lid, status, seconds, rtype="AWS::EC2::Subnet", reason=""):
    return stream.Event(f"{label}{lid}{status}{seconds}", label, lid, rtype, status, reason,
                          T0 + timedelta(seconds=seconds), f"resource {lid}", False)


def _deploy_in_flight() -> list[stream.Event]:
    """134 resources: 6 finished nested stacks of 15 each, one busy stack, one stack with a failure."""
    events, t = [], 0
    for n in range(6):
        stack = f"Done{n}"
        for i in range(15):
            t += 1
            events.append(_event(stack, f"R{i}", "CREATE_COMPLETE", t))
        events.append(_event("", stack, "CREATE_COMPLETE", t + 1, NESTED_STACK))
    events.append(_event("", "Busy", "CREATE_IN_PROGRESS", 5, NESTED_STACK))
    for i in range(20):
        t += 1
        events.append(_event("Busy", f"B{i}", "CREATE_COMPLETE" if i < 17 else "CREATE_IN_PROGRESS", t))
    events.append(_event("", "Broken", "CREATE_IN_PROGRESS", 6, NESTED_STACK))
    for i in range(15):
        t += 1
        events.append(_event("Broken", f"X{i}", "CREATE_COMPLETE", t))
    events.append(_event("Broken", "Cluster", "CREATE_FAILED", t + 1, "AWS::RDS::DBCluster",
                         reason="The engine version 99 is not available"))
    return events


def _rendered(events, height=HEIGHT, width=110, final=False) -> list[str]:
    buffer = io.StringIO()
    ui = Ui(out=io.StringIO(), err=buffer)
    ui.err = Console(file=buffer, force_terminal=True, width=width, height=height)
    view = progress.LiveView(ui, "app-dev")
    view.update(events, "CREATE_IN_PROGRESS")
    screen = Console(file=io.StringIO(), width=width, height=height, force_terminal=True, record=True)
    screen.print(view._render(final=final))
    return screen.export_text().splitlines()


def test_live_view_134_resources_fit_a_30_line_terminal_and_show_what_matters():
    events = _deploy_in_flight()
    resources = {(e.stack_label, e.logical_id) for e in events}
    assert len(resources) == 134

    lines = _rendered(events)

    assert len(lines) <= HEIGHT - 1, len(lines)
    text = "\n".join(lines)
    assert "134 resources" in lines[0]
    # the failure and its reason come first, then every row in progress
    assert "resource Cluster" in lines[2] and "CREATE_FAILED" in lines[2]
    assert "The engine version 99 is not available" in lines[3]
    for busy in ("resource B17", "resource B18", "resource B19", "resource Busy", "resource Broken"):
        assert busy in text, busy
    # each finished nested stack is one line, its resources are not listed
    for n in range(6):
        assert sum(f"Done{n} (nested stack, 15 resources)" in line for line in lines) == 1
    assert not any("Done0" in line and "resource R" in line for line in lines)


def test_live_view_never_exceeds_a_tiny_terminal_and_says_what_it_left_out():
    events = _deploy_in_flight()

    lines = _rendered(events, height=10)

    assert len(lines) <= 9
    assert "CREATE_FAILED" in "\n".join(lines)
    assert "more row" in lines[-1]


def test_fit_rows_keeps_everything_when_there_is_room():
    events = [_event("", "A", "CREATE_COMPLETE", 1), _event("", "B", "CREATE_IN_PROGRESS", 2)]

    rows, hidden = progress.fit_rows(events, budget=10)

    assert hidden == 0 and [r.resource for r in rows] == ["resource B", "resource A"]
    assert rows[0].busy and not rows[1].busy


def test_fit_rows_does_not_collapse_a_nested_stack_that_rolled_back():
    events = [_event("", "Data", "UPDATE_ROLLBACK_COMPLETE", 3, NESTED_STACK),
              _event("Data", "Bucket", "UPDATE_COMPLETE", 2)]

    rows, _ = progress.fit_rows(events, budget=10)

    assert {r.resource for r in rows} == {"resource Data", "resource Bucket"}
