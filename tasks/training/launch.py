"""Launching the trainer on several processes / machines with torchrun, from the training task.

The parent writes a job file (the normalized command + the trainer options) into the attempt's folder,
runs `python -m torch.distributed.run ... -m tasks.training.ddp_main` as a subprocess, streams its output
into the log (epoch lines are turned back into on_epoch calls), and reads the result file rank 0 wrote.
torchrun, not our code, starts, watches and tears down the ranks: when one fails it stops the others.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from models.bundle import write_json_atomic
from models.command import Command
from models.errors import UserError
from models.settings import Settings
from tasks.training.device import TrainingFailed
from tasks.training.loop import TrainOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
EPOCH_MARKER = "SERPTRAIN_EPOCH "  # a line rank 0 prints per epoch: marker + JSON of the history entry
JOB_FILE, RESULT_FILE = "job.json", "result.json"
OUTPUT_TAIL = 40  # lines of torchrun output kept for the error message

OnEpoch = Callable[[dict[str, Any], list[dict[str, Any]]], None]


def world_size(settings: Settings) -> int:
    return settings.nproc_per_node * settings.nnodes


def wants_distributed(settings: Settings) -> bool:
    """The training task's switch: more than one process asked for in SERPTRAIN_NPROC_PER_NODE / NNODES."""
    return world_size(settings) > 1


def trainer_is_ddp_aware() -> bool:
    """The trainer joins the process group itself (it imports init_distributed); without that, every rank
    would train the whole model alone and race on the same bundle."""
    import tasks.training.loop as loop

    return hasattr(loop, "init_distributed")


def rendezvous_args(settings: Settings, attempt_id: str) -> list[str]:
    if settings.nnodes == 1:
        return ["--standalone"]  # a free local port; no endpoint to agree on
    if not settings.rdzv_endpoint:
        raise UserError(f"SERPTRAIN_NNODES={settings.nnodes} needs SERPTRAIN_RDZV_ENDPOINT (HOST:PORT of one "
                        "machine every node can reach, e.g. node0:29400)")
    # The attempt id names the rendezvous: the nodes of one attempt meet, other attempts' nodes do not.
    return ["--rdzv_backend", "c10d", "--rdzv_endpoint", settings.rdzv_endpoint, "--rdzv_id", attempt_id]


def torchrun_command(command_json_path: Path, attempt_id: str, settings: Settings, *, store_url: str | None = None,
                     result_path: Path | None = None) -> list[str]:
    """The torchrun command line; on a multi-node run every node runs this same line."""
    job = Path(command_json_path).resolve()
    result = Path(result_path) if result_path else job.with_name(RESULT_FILE)
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", str(settings.nproc_per_node), "--nnodes", str(settings.nnodes),
        *rendezvous_args(settings, attempt_id),
        "-m", "tasks.training.ddp_main",
        "--command", str(job), "--attempt", attempt_id, "--store", store_url or settings.store,
        "--runs-dir", str(Path(settings.runs_dir).resolve()), "--result", str(result.resolve()),
    ]


def options_to_json(options: TrainOptions) -> dict[str, Any]:
    data = {f.name: getattr(options, f.name) for f in fields(options) if f.name != "on_epoch"}
    return json.loads(json.dumps(data, default=str))  # Path → str


def options_from_json(data: dict[str, Any]) -> TrainOptions:
    known = {f.name for f in fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in data.items() if k in known and k != "on_epoch"})


def write_job(directory: Path, command: Command, options: TrainOptions) -> Path:
    path = directory / JOB_FILE
    write_json_atomic(path, {"command": command.model_dump(mode="json"), "options": options_to_json(options)})
    return path


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # `-m tasks.training.ddp_main` must import from this checkout whatever the working directory.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    if "OMP_NUM_THREADS" not in env:
        # torchrun would set 1; CPU ranks on one machine share its cores instead.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        env["OMP_NUM_THREADS"] = str(max(1, cores // settings.nproc_per_node))
    return env


def _default_log(line: str) -> None:
    logging.getLogger(__name__).info("%s", line)


def stream(cmd: list[str], env: dict[str, str], log: Callable[[str], None],
           on_epoch: OnEpoch | None) -> tuple[int, str]:
    """Run cmd, passing each output line to log (epoch lines to on_epoch); (exit code, last lines)."""
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
    history: list[dict[str, Any]] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          bufsize=1) as process:
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                line = raw.rstrip("\n")
                tail.append(line)
                if line.startswith(EPOCH_MARKER) and on_epoch is not None:
                    history.append(json.loads(line[len(EPOCH_MARKER):]))
                    on_epoch(history[-1], list(history))  # it logs the epoch itself
                    continue
                log(line)
        except BaseException:  # a failing callback, a cancelled task, Ctrl-C: no ranks left behind
            process.terminate()  # torchrun passes SIGTERM on to its ranks
            raise
    return process.returncode, "\n".join(tail)


def read_result(path: Path, code: int, tail: str) -> dict[str, Any]:
    result = json.loads(path.read_text()) if path.exists() else None
    if code != 0:
        reason = (result or {}).get("error") or f"last output:\n{tail}"
        raise TrainingFailed(f"distributed training failed: torchrun exited with code {code}; {reason}")
    if result is None:
        raise TrainingFailed(f"distributed training ended (exit code 0) but rank 0 wrote no {path}; "
                             f"last output:\n{tail}")
    return result


def run_distributed(command: Command, attempt_id: str, store_url: str | None, settings: Settings,
                    options: TrainOptions | None = None, on_epoch: OnEpoch | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train `command` on nproc_per_node x nnodes processes; returns the summary rank 0 wrote (bundle_dir,
    history, manifest, counts, training extras, world_size). Blocks until torchrun exits."""
    if not trainer_is_ddp_aware():
        raise TrainingFailed("the trainer (tasks/training/loop.py) does not call init_distributed yet, so it "
                             "cannot train on several processes; set SERPTRAIN_NPROC_PER_NODE=1 and "
                             "SERPTRAIN_NNODES=1")
    options = options or TrainOptions(settings.runs_dir, attempt_id, settings.device, settings.num_workers)
    directory = Path(settings.runs_dir).resolve() / command.model_name / attempt_id / "ddp"
    directory.mkdir(parents=True, exist_ok=True)
    job = write_job(directory, command, options)
    result_path = directory / RESULT_FILE
    result_path.unlink(missing_ok=True)  # a result from an earlier try must not pass for this one
    cmd = torchrun_command(job, attempt_id, settings, store_url=store_url, result_path=result_path)
    code, tail = stream(cmd, child_env(settings), log or _default_log, on_epoch)
    return read_result(result_path, code, tail)


__all__ = ["run_distributed", "torchrun_command", "trainer_is_ddp_aware", "wants_distributed"]
