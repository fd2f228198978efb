"""Subcommands of `adkit` for deploying: bootstrap, pipeline, deploy, plan, status, secrets set, destroy.

Exit codes: 0 ok or no changes, 1 failed (after the rollback), 2 usage/config error, 3 preflight
refused, 4 declined, 130 interrupted. Prompts and progress go to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from generator.config import APP_RUNNER, CONFIG_DIR, REPO_ROOT, ConfigError, load_environment
from generator.deploy import aws_errors, destroy, flow, secrets, status, targets
from generator.deploy.errors import EXIT_INTERRUPTED, EXIT_USAGE, DeployError, UsageError
from generator.deploy.session import Aws
from generator.deploy.ui import Ui
from generator.naming import NamingError

EPILOG = ("exit codes: 0 ok or no changes, 1 deploy failed, 2 usage or config error, 3 preflight refused "
          "(wrong account/region, no bootstrap, stack busy, prod destroy), 4 declined, 130 interrupted")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # The same defaults as `adkit render` and `adkit restore`: the repository's config/ and templates/.
    common.add_argument("--config-dir", type=Path, default=CONFIG_DIR,
                        help="folder with account.toml and environments/*.toml (default: config/)")
    common.add_argument("--templates-dir", type=Path, default=REPO_ROOT / "templates",
                        help="rendered templates (default: templates/)")
    common.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or the default chain)")
    common.add_argument("--region", help="must equal the region pinned in the config file")
    return common


def _aws(args: argparse.Namespace, target: targets.Target) -> Aws:
    return Aws(args.profile, args.region or target.region)


def _account_target(args: argparse.Namespace, kind: str, deploying: bool = True) -> targets.Target:
    return targets.account(kind, args.config_dir, args.templates_dir, deploying=deploying)


def _env_target(args: argparse.Namespace, deploying: bool) -> targets.Target:
    return targets.environment(args.env, args.config_dir, args.templates_dir, deploying=deploying)


def _account_stack(args: argparse.Namespace, ui: Ui) -> int:
    target = _account_target(args, args.command)
    return flow.run(_aws(args, target), target, ui, yes=args.yes, plan_only=args.plan)


def _deploy(args: argparse.Namespace, ui: Ui) -> int:
    target = _env_target(args, deploying=True)
    return flow.run(_aws(args, target), target, ui, image_tag=args.image_tag, yes=args.yes)


def _plan(args: argparse.Namespace, ui: Ui) -> int:
    target = _env_target(args, deploying=True)
    return flow.run(_aws(args, target), target, ui, image_tag=args.image_tag, plan_only=True)


def _status(args: argparse.Namespace, ui: Ui) -> int:
    env_file = args.config_dir / "environments" / f"{args.env}.toml"
    if args.env in targets.ACCOUNT_TEMPLATES and not env_file.is_file():
        target = _account_target(args, args.env, deploying=False)
    else:
        target = _env_target(args, deploying=False)
    return status.run(_aws(args, target), target, ui, as_json=args.json)


def _secrets_set(args: argparse.Namespace, ui: Ui) -> int:
    if args.name is None:  # `adkit secrets set git-token`: the account-level token needs no environment
        if args.env != secrets.GIT_TOKEN:
            raise UsageError(f"missing NAME after {args.env!r}", "usage: adkit secrets set ENV NAME, or "
                             f"adkit secrets set {secrets.GIT_TOKEN}", "name the secret to set")
        target = _account_target(args, "bootstrap", deploying=False)
        return secrets.run(_aws(args, target), target, ui, secrets.GIT_TOKEN, declared=[])
    target = _env_target(args, deploying=False)
    declared = load_environment(args.env, args.config_dir / "environments").backend.secrets
    return secrets.run(_aws(args, target), target, ui, args.name, declared=declared)


def _destroy(args: argparse.Namespace, ui: Ui) -> int:
    target = _env_target(args, deploying=False)
    return destroy.run(_aws(args, target), target, ui, yes=args.yes)


def _check(args: argparse.Namespace, ui: Ui) -> int:
    """The deploy-time config rules, without AWS, for every named environment (or `bootstrap`, `pipeline`):
    account and region pinned, no example value, templates freshly rendered. Reports every problem."""
    failed = False
    for name in args.envs:
        found = targets.problems(name, args.config_dir, args.templates_dir)
        for line in found:
            ui.error(line)
        if found:
            failed = True
            continue
        kind = "account" if name in targets.ACCOUNT_TEMPLATES and not (
            args.config_dir / "environments" / f"{name}.toml").is_file() else "environment"
        # deploying=False: the deploy-time rules were checked above (each check renders the config once)
        target = (_account_target(args, name, deploying=False) if kind == "account" else
                  targets.environment(name, args.config_dir, args.templates_dir, deploying=False))
        ui.info(f"{name}: deployable as {target.stack_name} to account {target.account_id}, region {target.region}")
        if kind == "account":
            continue
        platform = load_environment(name, args.config_dir / "environments").backend.platform
        note = (" (App Runner: only accounts that used App Runner before 2026-04-30 can create the service; "
                "a new account sets backend.platform = \"ecs-express\")" if platform == APP_RUNNER else "")
        ui.info(f"{name}: backend platform {platform}{note}")
    return EXIT_USAGE if failed else 0


def _guarded(command: Callable[[argparse.Namespace, Ui], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; turn every expected failure into its message and exit code."""

    def handler(args: argparse.Namespace) -> int:
        ui = Ui()
        try:
            return command(args, ui)
        except DeployError as exc:
            ui.error(exc.message)
            return exc.exit_code
        except (ConfigError, NamingError) as exc:
            ui.error(str(exc))
            return EXIT_USAGE
        except KeyboardInterrupt:
            ui.error("interrupted")
            return EXIT_INTERRUPTED
        except (ClientError, BotoCoreError) as exc:   # every botocore error: one message, advice by kind
            explained = aws_errors.explain(exc, f"adkit {args.command}", getattr(args, "profile", None))
            ui.error(explained.message)
            return explained.exit_code

    return handler


def register(subparsers: argparse._SubParsersAction) -> None:
    common = _common()

    def add(name: str, command: Callable, help_: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, parents=[common], help=help_, description=help_, epilog=EPILOG)
        parser.set_defaults(handler=_guarded(command))
        return parser

    for kind, text in (("bootstrap", "deploy the account-level bootstrap stack (artifact bucket, ECR, token secret)"),
                       ("pipeline", "deploy the account-level CI/CD pipeline stack")):
        parser = add(kind, _account_stack, text)
        parser.add_argument("--yes", action="store_true", help="execute without asking")
        parser.add_argument("--plan", action="store_true", help="show the change set, then delete it")

    parser = add("deploy", _deploy, "deploy one environment: preflight, package, change set, confirm, execute")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--image-tag", help="backend image tag (commit SHA); default: the deployed one")
    parser.add_argument("--yes", action="store_true", help="execute without asking (production always asks)")

    parser = add("check", _check, "check that environments (and bootstrap, pipeline) are deployable as "
                 "configured (no AWS calls): account and region pinned, no example value, templates freshly "
                 "rendered; every problem of every one is reported")
    parser.add_argument("envs", metavar="ENV", nargs="+")

    parser = add("plan", _plan, "show what a deploy would change (change set created, shown, deleted)")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--image-tag", help="backend image tag to plan with; default: the deployed one")

    parser = add("status", _status, "stack states and outputs (URLs) of an environment, or bootstrap/pipeline")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--json", action="store_true", help="print state and outputs as JSON on stdout")

    secrets_parser = subparsers.add_parser("secrets", help="manage secret values (never echoed or logged)")
    secrets_sub = secrets_parser.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    parser = secrets_sub.add_parser("set", parents=[common], epilog=EPILOG,
                                    help="store a secret value from stdin or a hidden prompt")
    parser.add_argument("env", metavar="ENV", help=f"environment, or `{secrets.GIT_TOKEN}` alone")
    parser.add_argument("name", metavar="NAME", nargs="?",
                        help=f"a secret of the environment's backend.secrets, or {secrets.GIT_TOKEN}")
    parser.set_defaults(handler=_guarded(_secrets_set))

    parser = add("destroy", _destroy, "delete a non-production environment (retained data is listed first)")
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("--yes", action="store_true", help="delete without typing the environment name")
