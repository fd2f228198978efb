"""`adkit restore ENV --to-time ISO8601 | --latest`: point-in-time restore into a new Aurora cluster.

Exit codes (as for deploy, docs/deploy.md): 0 restored, 1 an AWS call failed or timed out, 2 bad
arguments or configuration, 3 refused (wrong account, unknown cluster, target exists), 4 not confirmed,
130 interrupted (what RDS already started carries on; the commands left are printed).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from generator.config import CONFIG_DIR
from generator.deploy import aws_errors, preflight, targets
from generator.deploy.errors import EXIT_INTERRUPTED, Declined, DeployError
from generator.deploy.session import Aws, poll_seconds
from generator.dr import restore

DEFAULT_TIMEOUT_MINUTES = 120


def minutes(text: str) -> float:
    """argparse type for --timeout-minutes: a finite number of minutes greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes greater than 0 (got {text!r})") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of minutes greater than 0 (got {text!r})")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore", help="restore an environment's Aurora cluster to a point in time, into a NEW cluster",
        description=restore.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("environment", metavar="ENV", help="environment name (config/environments/ENV.toml)")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--to-time", metavar="ISO8601", help="restore time with an offset, e.g. 2026-05-01T12:30:00Z")
    when.add_argument("--latest", action="store_true", help="restore to the latest restorable time (~5 min ago)")
    parser.add_argument("--target-cluster", metavar="NAME",
                        help="identifier of the new cluster (default <source>-pitr-YYYYMMDDHHMM)")
    parser.add_argument("--source-cluster", metavar="ID",
                        help="source cluster (default: the root stack output DatabaseClusterIdentifier)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--profile", help="AWS profile (default: the standard credential chain)")
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR,
                        help="folder with account.toml and environments/*.toml (default: config/)")
    parser.add_argument("--timeout-minutes", type=minutes, default=DEFAULT_TIMEOUT_MINUTES,
                        help=f"stop waiting after this long (default {DEFAULT_TIMEOUT_MINUTES})")
    parser.set_defaults(handler=_handle)


def _confirm(text: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Declined("restore not confirmed", "standard input is not a terminal and --yes was not given",
                       "re-run with --yes after reading the plan above")
    print(f"{text} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Declined("restore declined", "nothing was created", "")


def _handle(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        target = targets.environment(args.environment, args.config_dir, Path("templates"), deploying=False)
        to_time = restore.parse_time(args.to_time) if args.to_time else None
        aws = Aws(args.profile, target.region)
        preflight.identity(aws, target)
        plan = restore.plan(aws, environment=target.label, stack_name=target.stack_name,
                            source=args.source_cluster, to_time=to_time, target=args.target_cluster)
        print(f"restore plan for {target.label} (account {target.account_id}, {target.region}{aws.endpoint_note}):",
              file=err)
        for key, value in (("source cluster", plan.source_id), ("restore to", plan.when),
                           ("restorable window", f"{restore._iso(plan.window[0])} .. {restore._iso(plan.window[1])}"),
                           ("new cluster", plan.target_id), ("writer instance", plan.writer_id)):
            print(f"  {key:18} {value}", file=err)
        for note in plan.notes:
            print(f"  note: {note}", file=err)
        _confirm(f"Create cluster {plan.target_id}? The source is not changed.", args.yes)
        progress = restore.Progress(err)
        cluster = restore.execute(aws, plan, progress=progress, timeout=args.timeout_minutes * 60,
                                  poll=poll_seconds())
        progress.say(f"cluster {plan.target_id} is available")
        print(restore.summary(plan, cluster, stack_name=target.stack_name))
        return 0
    except DeployError as exc:
        print(f"error: {exc.message}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:   # before the first write: execute() reports its own interruptions
        print("error: interrupted before the restore started: nothing was created.", file=err)
        return EXIT_INTERRUPTED
    except (ClientError, BotoCoreError) as exc:
        explained = aws_errors.explain(exc, "planning the restore (nothing was created)", args.profile)
        print(f"error: {explained.message}", file=err)
        return explained.exit_code
