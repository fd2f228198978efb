"""Subcommands of `adkit` for operating an environment: logs, rollback (AWS); diagram, cost (offline).

Exit codes as for deploy (docs/deploy.md); `logs --follow` ends with 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generator.deploy import status, targets
from generator.deploy.cli import EPILOG, _aws, _common, _env_target, _guarded
from generator.deploy.errors import EXIT_INTERRUPTED, EXIT_OK, PreflightRefused, UsageError
from generator.deploy.session import poll_seconds
from generator.deploy.ui import Ui

# generator.ops.logs.COMPONENTS, repeated so that building the parser (every `adkit render`) imports no ops module
LOG_COMPONENTS = ("backend", "worker", "database", "waf")


def _deployed(args: argparse.Namespace, ui: Ui):
    target = _env_target(args, deploying=False)
    aws = _aws(args, target)
    return target, aws, status.deployed(aws, target)


def _logs(args: argparse.Namespace, ui: Ui) -> int:
    from generator.ops import inventory, logs

    start = logs.since_millis(args.since)
    target, aws, stack = _deployed(args, ui)
    found = logs.sources(inventory.read(aws, stack))
    chosen = [s for s in found if args.component in (None, s.component)]
    if not chosen:
        have = ", ".join(sorted({s.component for s in found})) or "none"
        raise PreflightRefused(f"{target.stack_name} has no {args.component or ''} log group".replace("  ", " "),
                               f"log sources deployed: {have}", "pick one of those with --component")
    ui.step(f"Logs of {target.stack_name} since {args.since}: " + ", ".join(s.group for s in chosen))
    events = logs.fetch(aws, chosen, start, args.filter,
                        missing=lambda s: ui.warn(f"{s.group} does not exist yet (App Runner creates its groups "
                                                  "when the first instance starts); skipped"))
    for event in events:
        ui.data(event.line())
    if not args.follow:
        if not events:
            ui.info("no log events in that window")
        return EXIT_OK
    ui.info("following; Ctrl-C to stop", "dim")
    try:
        logs.follow(aws, chosen, events[-1].timestamp if events else start, args.filter,
                    lambda event: ui.data(event.line()), poll_seconds() or 0.5,
                    shown=events)
    except KeyboardInterrupt:
        sys.stdout.flush()
        return EXIT_INTERRUPTED
    return EXIT_OK   # pragma: no cover (follow only ends by Ctrl-C)


def _rollback(args: argparse.Namespace, ui: Ui) -> int:
    from generator.ops import rollback

    target = _env_target(args, deploying=True)
    return rollback.run(_aws(args, target), target, ui, to=args.to, yes=args.yes)


def _rendered(args: argparse.Namespace):
    """Config and rendered templates of one environment (offline; no account or region needed)."""
    from generator.config import load_environment
    from generator.deploy import templates

    config = load_environment(args.env, args.config_dir / "environments")
    root = args.templates_dir / args.env / targets.ROOT_FILE
    if not root.is_file():
        raise UsageError(f"{root}: template not found", "the diagram and the estimate read the rendered templates",
                         "run `make render` (or `adkit render`), then retry")
    return config, templates.load(root)


def _diagram(args: argparse.Namespace, ui: Ui) -> int:
    from generator import naming
    from generator.ops import diagram

    config, loaded = _rendered(args)
    graph = diagram.build(loaded, args.env)
    text = diagram.to_dot(graph, f"{naming.root_stack_name(config)}: architecture "
                                 f"(from {args.templates_dir.name}/{args.env}/, rendered config)")
    if args.output is None:
        ui.data(text.rstrip("\n"))
        return EXIT_OK
    diagram.render_file(text, args.output)
    ui.info(f"wrote {args.output} ({len(graph.groups)} nested stacks, {len(graph.nodes())} nodes, "
            f"{len(graph.edges)} data paths)")
    return EXIT_OK


def _cost(args: argparse.Namespace, ui: Ui) -> int:
    import json

    from generator.ops import cost

    config, loaded = _rendered(args)
    found = cost.estimate(config, loaded, args.region)
    if args.json:
        ui.data(json.dumps(found.as_json(), indent=2))
    else:
        for line in cost.table(found):
            ui.data(line)
    if found.warning:
        ui.warn(found.warning)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    common = _common()

    def add(name: str, command, help_: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, parents=[common], help=help_, description=help_, epilog=EPILOG)
        parser.set_defaults(handler=_guarded(command))
        return parser

    parser = add("logs", _logs, "the environment's CloudWatch Logs (backend, worker, database, WAF), newest last")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--since", default="1h", help="duration (30s, 15m, 1h, 2d) or ISO time (default: 1h)")
    parser.add_argument("--component", choices=LOG_COMPONENTS, help="only this source (default: all)")
    parser.add_argument("--filter", help="CloudWatch Logs filter pattern, e.g. ERROR or '\"request id\"'")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")

    parser = add("rollback", _rollback, "redeploy the image pushed before the deployed one (or --to TAG) through "
                 "the deploy flow: change set, confirmation (production always asks), progress")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--to", metavar="TAG", help="the image tag to go back to (default: the previous push)")
    parser.add_argument("--yes", action="store_true", help="execute without asking (production always asks)")

    parser = add("diagram", _diagram, "architecture diagram of an environment from its rendered templates "
                 "(offline): DOT on stdout, or --output FILE.svg|.png|.dot (needs Graphviz for svg/png)")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--output", "-o", type=Path, help="file to write (.svg, .png or .dot)")

    parser = add("cost", _cost, "monthly cost estimate of an environment from its config and rendered templates "
                 "(offline): idle floor and a stated busy month per component, against budget.monthly_usd")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON on stdout")
