"""Change set tree -> lines for the operator: adds, modifies and removes per stack, replacements apart,
and a loud warning when a stateful resource would be replaced or deleted. Pure: no I/O."""

from __future__ import annotations

from generator.deploy.changeset import Change, StackChanges
from generator.deploy.templates import NESTED_STACK
from generator.deploy.ui import Line

SYMBOL = {"Add": ("+", "green"), "Modify": ("~", "yellow"), "Remove": ("-", "red"),
          "Import": ("<", "cyan"), "Dynamic": ("?", "magenta")}


def _path(label: str, logical_id: str) -> str:
    return f"{label}/{logical_id}" if label else logical_id


def _heading(stack: StackChanges, stack_name: str, titles: dict[str, str]) -> str:
    if not stack.label:
        return f"{stack_name} (root stack)"
    title = titles.get(stack.label)
    return f"{stack.label}: {title}" if title else stack.label


def _change_line(change: Change, width: int) -> Line:
    symbol, style = SYMBOL.get(change.action, ("?", "magenta"))
    extra = ""
    if change.replaces:
        extra = "  REPLACED" if change.replacement == "True" else "  may be REPLACED"
        style = "bold red" if change.stateful else "bold yellow"
    elif change.action == "Remove" and change.stateful:
        style = "bold red"
    props = f" ({', '.join(change.properties)})" if change.properties else ""
    return Line(f"    {symbol} {change.action:<7} {change.name + props:<{width}}  {change.resource_type}{extra}", style)


def counts(tree: StackChanges) -> dict[str, int]:
    leaves = [change for _, change in tree.leaf_changes()]
    return {
        "add": sum(c.action == "Add" for c in leaves),
        "modify": sum(c.action == "Modify" for c in leaves),
        "remove": sum(c.action == "Remove" for c in leaves),
        "replace": sum(c.replaces for c in leaves),
        "stateful": sum(c.destroys_data for c in leaves),
    }


def render(tree: StackChanges, stack_name: str, titles: dict[str, str] | None = None) -> list[Line]:
    """`titles` maps a nested stack's label to its description (shown in its heading)."""
    titles = titles or {}
    stacks = [s for s in tree.walk() if s.changes]
    width = max((len(c.name) + (len(", ".join(c.properties)) + 3 if c.properties else 0)
                 for s in stacks for c in s.changes), default=10)
    width = min(width, 70)
    lines: list[Line] = []
    if not stacks:
        lines.append(Line(f"{stack_name}: no resource changes (outputs, tags or metadata only)", "bold"))
    for stack in stacks:
        lines.append(Line(f"  {_heading(stack, stack_name, titles)}", "bold"))
        lines += [_change_line(change, width) for change in stack.changes]

    leaves = tree.leaf_changes()
    replaced = [(label, c) for label, c in leaves if c.replaces]
    if replaced:
        lines.append(Line(""))
        lines.append(Line("Replacements (a new resource is created and the old one deleted; its physical id "
                          "changes):", "bold yellow"))
        for label, change in replaced:
            how = "replaced" if change.replacement == "True" else "may be replaced (depends on runtime values)"
            lines.append(Line(f"  ! {_path(label, change.logical_id)}: {change.description or change.resource_type}"
                              f" ({change.resource_type}) {how}", "yellow"))
    destroying = [(label, c) for label, c in leaves if c.destroys_data]
    nested_removed = [(label, c) for label, c in leaves
                      if c.action == "Remove" and c.resource_type == NESTED_STACK]
    if destroying or nested_removed:
        lines.append(Line(""))
        lines.append(Line("!!! WARNING: DATA LOSS. These stateful resources would be replaced or deleted; "
                          "unless their DeletionPolicy retains or snapshots them, their data is gone:", "bold red"))
        for label, change in destroying:
            verb = ("DELETED" if change.action == "Remove" else
                    "REPLACED" if change.replacement == "True" else "MAY BE REPLACED")
            if change.dynamic:
                verb += (" (CloudFormation decides during the deploy, from values other stacks pass in; check that "
                         "those values really change)")
            lines.append(Line(f"!!!   {_path(label, change.logical_id)} ({change.resource_type}) {verb}", "bold red"))
        for label, change in nested_removed:
            lines.append(Line(f"!!!   nested stack {_path(label, change.logical_id)} REMOVED with everything in it",
                              "bold red"))
    n = counts(tree)
    lines.append(Line(""))
    summary = f"Summary: {n['add']} to add, {n['modify']} to modify, {n['remove']} to remove"
    if n["replace"]:
        summary += f", {n['replace']} replacement(s)"
    if n["stateful"]:
        summary += f", {n['stateful']} STATEFUL resource(s) replaced or deleted"
    lines.append(Line(summary, "bold red" if n["stateful"] else "bold"))
    return lines
