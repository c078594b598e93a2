"""serptrain run | demo | validate | import-folder."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from flows.commandfile import read_command_file
from flows.progress import finish_progress, progress_printer
from flows.tables import text_table
from models.errors import CommandError, UserError


def _validated(raw: Any) -> tuple[Any, Any]:
    from models.validation import validate_command

    return validate_command(raw)


def print_problems(error: CommandError) -> None:
    print(f"the command has {len(error.problems)} problem(s):", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    raw = read_command_file(args.file)
    try:
        command, report = _validated(raw)
    except CommandError as exc:
        print_problems(exc)
        return 2
    print(json.dumps({"command": command.model_dump(mode="json"), "dry_run": report.as_dict()}, indent=2))
    return 0


def _executable(name: str) -> str:
    """A command of this environment (.venv/bin/NAME), relative to the current folder where it lies inside it."""
    executable = Path(sys.executable).parent / name
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable)


def _training_length(result: dict[str, Any]) -> str:
    if result.get("steps"):
        rounds = f"{result['epochs']} round{'s' if result['epochs'] != 1 else ''}"
        return f"steps: {result['steps']} on random batches ({rounds})"
    return f"epochs: {result['epochs']}"


def format_summary(result: dict[str, Any]) -> str:
    rows = text_table(["label", "train", "val", "test"],
                      [(label, c["train"], c["val"], c["test"]) for label, c in result["counts"].items()])
    prefect_home = os.environ.get("PREFECT_HOME", "~/.prefect")
    return "\n".join([
        "",
        f"serptrain: {result['model_name']} trained and evaluated (attempt {result['attempt_id']})",
        *("  " + row for row in rows),
        f"  {_training_length(result)} on {result['device']} in {result['train_seconds']:.1f}s",
        f"  test accuracy: {result['test_accuracy']:.3f} on {result['test_images']} held-out images",
        f"  bundle: {result['bundle_dir']}  (model.safetensors, model.json, metrics.json, PNGs)",
        f"  predict: {_executable('serptrain')} predict {result['bundle_dir']} IMAGE",
        "  look at the run and its artifacts in the Prefect UI:",
        f"    PREFECT_HOME={prefect_home} {_executable('prefect')} server start   # then open http://127.0.0.1:4200/runs",
    ])


def run_pipeline(raw: Any, store_url: str | None = None, attempt_id: str | None = None) -> int:
    try:
        command, _ = _validated(raw)
    except CommandError as exc:
        print_problems(exc)
        return 2
    from flows.pipeline import choose_source, train_classifier

    choose_source(command, store_url)  # a missing source is the user's to fix: say so before starting
    state = train_classifier(command, store_url, attempt_id, return_state=True)
    if not state.is_completed():
        failure = state.result(raise_on_failure=False)
        message = str(failure) if isinstance(failure, BaseException) else state.message
        print(f"error: the pipeline failed: {message}", file=sys.stderr)
        # Something the user can fix (a key, a weights file, images) is exit 2, as everywhere else.
        return failure.exit_code if isinstance(failure, UserError) else 1
    print(format_summary(state.result()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return run_pipeline(read_command_file(args.file), args.store, args.resume)


def cmd_resume(args: argparse.Namespace) -> int:
    from store import open_store

    attempt = open_store(args.store).get_attempt(args.attempt_id)
    if attempt is None:
        raise UserError(f"no attempt {args.attempt_id!r}; `serptrain attempts list` shows them")
    return run_pipeline(attempt["command"], args.store, args.attempt_id)


def cmd_demo(args: argparse.Namespace) -> int:
    from models.defaults import demo_command

    return run_pipeline(demo_command(), args.store)


def cmd_import_folder(args: argparse.Namespace) -> int:
    from store import open_store
    from tasks.ingest import Ingestor, folder_images, ingest_paths

    root = Path(args.dir)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (expected DIR/<label>/<images>)")
    items = list(folder_images(root))
    if not items:
        raise UserError(f"{root}: no images found in label sub-folders (expected DIR/<label>/<images>)")
    ingestor = Ingestor(open_store(args.store))

    report = ingest_paths(ingestor, items, progress_printer("ingested"))
    finish_progress()
    print(json.dumps(report.as_dict(), indent=2) if args.json else _report_table(report.as_dict()))
    return 0


def _report_table(report: dict[str, Any]) -> str:
    rows = [(label, r["seen"], r["stored"], r["duplicates"], r["near_duplicates"], r["ambiguous"],
             ", ".join(f"{reason} {n}" for reason, n in r["rejected"].items()))
            for label, r in report.items()]
    return "\n".join(text_table(["label", "seen", "stored", "dup", "near", "ambig", "rejected"], rows))


def register(sub: argparse._SubParsersAction) -> None:
    store_help = "store URL (default: $SERPTRAIN_STORE or sqlite:///./.serptrain/serptrain.db)"
    run = sub.add_parser("run", help="validate a command file (JSON or YAML) and run the whole pipeline")
    run.add_argument("file")
    run.add_argument("--store", default=None, help=store_help)
    run.add_argument("--resume", metavar="ATTEMPT_ID", default=None,
                     help="take up this attempt again: training resumes from its last checkpoint")
    run.set_defaults(func=cmd_run)
    resume = sub.add_parser("resume", help="re-run a failed or interrupted attempt from its last checkpoint")
    resume.add_argument("attempt_id")
    resume.add_argument("--store", default=None, help=store_help)
    resume.set_defaults(func=cmd_resume)
    demo = sub.add_parser("demo", help="run the pipeline offline on a synthetic shapes task")
    demo.add_argument("--store", default=None, help=store_help)
    demo.set_defaults(func=cmd_demo)
    val = sub.add_parser("validate", help="check and dry-run a command file; writes nothing")
    val.add_argument("file")
    val.set_defaults(func=cmd_validate)
    imp = sub.add_parser("import-folder", help="ingest DIR/<label>/<images> into the store")
    imp.add_argument("dir")
    imp.add_argument("--store", default=None, help=store_help)
    imp.add_argument("--json", action="store_true", help="print the ingest report as JSON")
    imp.set_defaults(func=cmd_import_folder)
