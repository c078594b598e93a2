"""The serptrain command line. Each area registers its sub-commands from its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from flows.environment import (
    FLOW_COMMANDS,
    PREFECT_FREE_COMMANDS,
    ensure_prefect_database,
    ensure_prefect_home,
    prepare_prefect_environment,
    quiet_user_error_tracebacks,
)

# Each module exposes register(subparsers); a sub-command sets `func(args) -> int` as its default.
COMMAND_MODULES = [
    "flows.cli_pipeline",  # run, demo, validate, import-folder
    "flows.cli_store",  # store ..., attempts ...
    "flows.cli_acquire",  # acquire
    "flows.cli_model",  # evaluate, predict
    "flows.cli_schema",  # schema
    "flows.cli_service",  # request-label
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serptrain", description="Search queries in, a trained and evaluated image classifier out."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    prepare_prefect_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from models.errors import UserError

    if args.command not in PREFECT_FREE_COMMANDS:
        ensure_prefect_home()
        quiet_user_error_tracebacks()
    if args.command in FLOW_COMMANDS:
        ensure_prefect_database()
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the outside world failed (network, disk): say what, keep the traceback opt-in
        if os.environ.get("SERPTRAIN_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc}\n(set SERPTRAIN_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
