"""serptrain schema [--markdown | --settings]: the command's JSON Schema, the command reference, or the
settings reference (both generated)."""

from __future__ import annotations

import argparse
import json


def cmd_schema(args: argparse.Namespace) -> int:
    if args.settings:
        from models.settings_doc import settings_reference

        print(settings_reference(), end="")
        return 0
    if args.markdown:
        from models.schema_doc import command_reference

        print(command_reference(), end="")
        return 0
    from models.command import Command

    print(json.dumps(Command.model_json_schema(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    schema = sub.add_parser("schema", help="print the command's JSON Schema (or --markdown: the command reference)")
    shown = schema.add_mutually_exclusive_group()
    shown.add_argument("--markdown", action="store_true", help="print the command reference as markdown")
    shown.add_argument("--settings", action="store_true", help="print the SERPTRAIN_* settings reference as markdown")
    schema.set_defaults(func=cmd_schema)
