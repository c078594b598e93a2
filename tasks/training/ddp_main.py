"""One rank of a distributed training run, as torchrun starts it:

    python -m torch.distributed.run --nproc_per_node 2 --standalone -m tasks.training.ddp_main \
        --command job.json --attempt ID --store sqlite:///... --runs-dir runs --result result.json

It calls the same trainer entry point as the single-process task (`tasks.training.loop.train`); the trainer
joins the process group, shards the samples and leaves the writing to rank 0. The command file is either a
job written by `launch.run_distributed` ({"command", "options"}) or a plain command dictionary (a hand-made
multi-node launch), which is then validated in full.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from models.bundle import write_json_atomic
from models.command import Command
from models.errors import UserError
from models.settings import load_settings
from models.validation import validate_command
from store import open_store
from tasks.training.distributed import DistContext, cleanup, init_distributed
from tasks.training.launch import EPOCH_MARKER, options_from_json, trainer_is_ddp_aware
from tasks.training.loop import TrainOptions, TrainResult, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tasks.training.ddp_main", description=__doc__.splitlines()[0])
    parser.add_argument("--command", required=True, type=Path, help="job or command JSON file")
    parser.add_argument("--attempt", required=True, help="attempt id (names the bundle folder)")
    parser.add_argument("--store", required=True, help="store URL every rank opens")
    parser.add_argument("--runs-dir", required=True, type=Path, help="where the bundle is written")
    parser.add_argument("--result", required=True, type=Path, help="summary JSON written by rank 0")
    return parser.parse_args(argv)


def load_job(path: Path, args: argparse.Namespace) -> tuple[Command, TrainOptions]:
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "command" in data and "options" in data:
        # Written by run_distributed from an already validated command: the normalized form.
        command = Command.model_validate(data["command"])
        options = options_from_json(data["options"])
    else:
        from tasks.train import train_options  # the training task's mapping: one place decides the options

        command, _ = validate_command(data)
        options = train_options(load_settings(), args.attempt, command)
    options.runs_dir, options.attempt_id = args.runs_dir, args.attempt  # the launcher's word wins
    return command, options


def print_epoch(entry: dict[str, Any], history: list[dict[str, Any]]) -> None:
    # The launcher turns these lines back into on_epoch calls (progress artifact, attempt record).
    print(EPOCH_MARKER + json.dumps(entry, default=str), flush=True)


def summary(result: TrainResult, ctx: DistContext) -> dict[str, Any]:
    """What the training task needs, as plain JSON (the manifest travels whole: the task writes it)."""
    return {
        "bundle_dir": str(result.bundle_dir), "history": result.history, "device": result.device,
        "seconds": round(result.seconds, 2), "counts": result.manifest.counts(),
        "manifest_hash": result.manifest.digest(),
        "manifest": {"labels": result.manifest.labels, "splits": result.manifest.items},
        "training": result.extra, "world_size": ctx.world_size,
    }


def run(args: argparse.Namespace) -> int:
    if not trainer_is_ddp_aware():
        print("error: tasks/training/loop.py does not call init_distributed; it cannot train on several "
              "processes", file=sys.stderr)
        return 2
    command, options = load_job(args.command, args)
    ctx = init_distributed(options.device)  # before the trainer, so a bad rendezvous fails before any work
    if ctx.is_main:
        options.on_epoch = print_epoch
    try:
        result = train(command, open_store(args.store), options)
        if ctx.is_main:
            write_json_atomic(args.result, summary(result, ctx))
    except UserError as exc:
        if ctx.is_main:  # the launcher reports this sentence rather than a traceback
            write_json_atomic(args.result, {"error": str(exc)})
        raise
    finally:
        cleanup(ctx)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
