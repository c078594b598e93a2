"""A training process SIGKILLed mid-epoch resumes from its last checkpoint and ends where an uninterrupted
run with the same seed ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.validation import validate_command
from store import open_store
from tasks.evaluation import evaluate_keys
from tasks.training.checkpoint import load_checkpoint
from tasks.training.loop import TrainOptions, train
from tests.helpers import fill_synthetic, small_command

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
LABELS = ["circle", "square"]

# The child trains the same attempt and hangs a few steps into epoch 3 (after the epoch-2 checkpoint), so the
# parent's SIGKILL always lands mid-epoch, whatever the machine's speed.
CHILD = """
import sys, time
from store import open_store
from models.validation import validate_command
from tasks.training import steps
from tasks.training.loop import TrainOptions, train
from tests.test_training_resume import command_dict

store_url, runs_dir = sys.argv[1], sys.argv[2]
original = steps.Stepper._optimizer_step
def hanging_step(self):
    original(self)
    if self.global_step == self.steps_per_epoch * 2 + 2:
        print("HANG", flush=True)
        time.sleep(3600)
steps.Stepper._optimizer_step = hanging_step
def on_epoch(entry, history):
    print("EPOCH", entry["epoch"], flush=True)
command, _ = validate_command(command_dict())
options = TrainOptions(runs_dir, "attempt-x", workers=0, on_epoch=on_epoch)
train(command, open_store(store_url), options)
print("FINISHED", flush=True)
"""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child (OMP_NUM_THREADS=1): the same float summation order in both
    yield
    torch.set_num_threads(before)


def command_dict() -> dict:
    return small_command(
        LABELS, epochs=EPOCHS, seed=7, optimizer={"name": "Adam", "lr": 0.003},
        scheduler={"name": "StepLR", "step_size": 2, "gamma": 0.5},
        transform={"ToTensor": True, "Normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}, "RandomHorizontalFlip": True},
    )


def _kill_mid_run(store_url: str, runs_dir: Path, steps_per_epoch: int) -> list[str]:
    code = CHILD.replace("self.steps_per_epoch", str(steps_per_epoch))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", code, store_url, str(runs_dir)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith(("HANG", "FINISHED")):
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    return lines


def test_sigkilled_training_resumes_and_matches_an_uninterrupted_run(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=40, size=24)
    store = open_store(store_url)
    command, _ = validate_command(command_dict())
    n_train = len([k for label in LABELS for k in store.keys(label, "train")])
    steps_per_epoch = -(-n_train // command.batch_size)

    lines = _kill_mid_run(store_url, workdir / "runs", steps_per_epoch)
    assert lines[-1] == "HANG" and "EPOCH 2" in lines and "EPOCH 3" not in lines, lines
    checkpoint = workdir / "runs" / "tiny" / "attempt-x" / "checkpoints" / "last.safetensors"
    assert load_checkpoint(checkpoint)["epoch"] == 2
    assert not (workdir / "runs" / "tiny" / "attempt-x" / "model.safetensors").exists()

    resumed = train(command, store, TrainOptions(workdir / "runs", "attempt-x", workers=0))
    straight = train(command, store, TrainOptions(workdir / "runs", "attempt-y", workers=0))

    assert resumed.extra["resumed_from_epoch"] == 2 and straight.extra["resumed_from_epoch"] == 0
    assert [e["epoch"] for e in resumed.history] == list(range(1, EPOCHS + 1))
    for a, b in zip(resumed.history, straight.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3, abs=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3, abs=1e-4)
        assert a["lr"] == pytest.approx(b["lr"])
    test_items = resumed.manifest.items["test"]
    resumed_test = evaluate_keys(resumed.bundle_dir, store, test_items, LABELS)
    straight_test = evaluate_keys(straight.bundle_dir, store, test_items, LABELS)
    assert resumed_test["accuracy"] == pytest.approx(straight_test["accuracy"], abs=0.02)


def test_a_finished_attempt_rerun_does_not_train_again(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=20, size=16)
    command, _ = validate_command(small_command(LABELS, epochs=2))
    store = open_store(store_url)
    first = train(command, store, TrainOptions(workdir / "runs", "a1", workers=0))
    again = train(command, store, TrainOptions(workdir / "runs", "a1", workers=0))
    assert again.extra["resumed_from_epoch"] == 2 and again.extra["steps"] == first.extra["steps"]
    assert again.history == first.history


def test_a_changed_command_starts_over(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=20, size=16)
    store = open_store(store_url)
    first, _ = validate_command(small_command(LABELS, epochs=2))
    train(first, store, TrainOptions(workdir / "runs", "a1", workers=0))
    changed, _ = validate_command(small_command(LABELS, epochs=2, optimizer={"name": "SGD", "lr": 0.01}))
    result = train(changed, store, TrainOptions(workdir / "runs", "a1", workers=0))
    assert result.extra["resumed_from_epoch"] == 0 and len(result.history) == 2
