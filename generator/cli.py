"""adkit: per-environment TOML config in, reviewed CloudFormation (nested stacks) out; deploys it with change sets
and guard rails, and operates it: status, logs, rollback, restore, an architecture diagram and a cost estimate."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import import_module
from pathlib import Path

from generator.config import CONFIG_DIR, ConfigError
from generator.naming import NamingError

# Each module exposes register(subparsers); its subcommands set `handler` via set_defaults.
COMMAND_MODULES = ("generator.deploy.cli", "generator.dr.cli", "generator.ops.cli")

EXIT_USAGE = 2


def _render(args: argparse.Namespace) -> int:
    from generator import render

    args.templates_dir = args.templates_dir or render.TEMPLATES_DIR
    started = time.perf_counter()
    files = render.render_all(args.config_dir / "environments", args.config_dir / "account.toml")
    out_dir = args.templates_dir
    if args.check:
        stale = render.differences(files, out_dir)
        if stale:
            print(f"{out_dir} differs from a fresh render (run `make render` and commit):", file=sys.stderr)
            for relative in stale:
                print(f"  {relative}", file=sys.stderr)
            return 1
        print(f"{out_dir} is up to date ({len(files)} files)", file=sys.stderr)
        return 0
    try:
        written = render.write(files, out_dir)
    except render.OutputRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    elapsed = time.perf_counter() - started
    print(f"rendered {len(files)} files in {elapsed:.2f} s; {len(written.changed)} changed, "
          f"{len(written.deleted)} deleted", file=sys.stderr)
    for label, paths in (("changed", written.changed), ("deleted", written.deleted)):
        for relative in paths:
            print(f"  {label:8} {relative}", file=sys.stderr)
    for relative in written.kept:
        print(f"  kept     {relative} (no longer rendered, but edited since it was: delete it yourself if unused)",
              file=sys.stderr)
    return 0


def parser(command_modules: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="adkit", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = sub.add_parser("render", help="render every environment and the account-level stacks to templates/")
    render.add_argument("--check", action="store_true", help="compare with templates/ instead of writing")
    render.add_argument("--config-dir", type=Path, default=CONFIG_DIR,
                        help="folder with account.toml and environments/*.toml (default: config/)")
    render.add_argument("--templates-dir", type=Path, default=None,
                        help="output folder (default: templates/)")
    render.set_defaults(handler=_render)
    for name in command_modules:
        import_module(name).register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `render` is the first command of every adopter and of every CI run: it never loads the deploy commands
    # (boto3, botocore, rich), only what rendering needs.
    rendering = bool(argv) and argv[0] == "render"
    args = parser(() if rendering else COMMAND_MODULES).parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, NamingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
