"""serptrain schema [--markdown]: the command's JSON Schema, or the generated command reference."""

from __future__ import annotations

import argparse
import json


def cmd_schema(args: argparse.Namespace) -> int:
    if args.markdown:
        from models.schema_doc import command_reference

        print(command_reference(), end="")
        return 0
    from models.command import Command

    print(json.dumps(Command.model_json_schema(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    schema = sub.add_parser("schema", help="print the command's JSON Schema (or --markdown: the command reference)")
    schema.add_argument("--markdown", action="store_true", help="print the command reference as markdown")
    schema.set_defaults(func=cmd_schema)
