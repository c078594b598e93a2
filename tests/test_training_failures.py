"""Training that cannot go on says why: NaN/inf loss, out of memory; the step's safety nets work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from models.validation import validate_command
from store import open_store
from tasks.training import steps
from tasks.training.device import Precision, TrainingFailed, make_scaler
from tasks.training.loop import TrainOptions, train
from tests.helpers import fill_synthetic, small_command

LABELS = ["circle", "square"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _stepper(model: nn.Module, lr: float, **kwargs) -> steps.Stepper:
    device = torch.device("cpu")
    precision = Precision(None, False, False)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return steps.Stepper(model, nn.MSELoss(), optimizer, make_scaler(device, precision), device, precision, 4,
                         **kwargs)


def test_exploding_loss_stops_with_a_clear_message(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=20, size=16)
    command, _ = validate_command(small_command(LABELS, epochs=3, optimizer={"name": "SGD", "lr": 1e30}))
    with pytest.raises(TrainingFailed, match=r"loss became (nan|inf) in epoch \d by step \d+.*lower optimizer.lr"):
        train(command, open_store(store_url), TrainOptions(workdir / "runs", "nan", workers=0))


def test_out_of_memory_names_the_batch_size_and_a_smaller_one(workdir: Path, store_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=12, size=16)
    command, _ = validate_command(small_command(LABELS, epochs=1, batch_size=16))

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(steps, "autocast", no_memory)
    with pytest.raises(TrainingFailed, match="batch_size 16; try batch_size 8"):
        train(command, open_store(store_url), TrainOptions(workdir / "runs", "oom", workers=0))


def test_no_training_images_is_refused_before_anything_runs(workdir: Path, store_url: str) -> None:
    command, _ = validate_command(small_command(LABELS, epochs=1))
    with pytest.raises(TrainingFailed, match="no training images"):
        train(command, open_store(store_url), TrainOptions(workdir / "runs", "empty", workers=0))


def test_warmup_scales_the_first_steps_and_restores_the_lr() -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    stepper = _stepper(model, lr=1.0, warmup_steps=4)
    batch = [(torch.ones(4, 1), torch.ones(4, 1))]
    stepper.train_epoch(batch, 1)
    # MSE gradient at w=0 with x=y=1 is -2; the first step runs at lr 1/4
    assert model.weight.item() == pytest.approx(0.5)
    assert stepper.optimizer.param_groups[0]["lr"] == 1.0 and stepper.global_step == 1


def test_gradient_clipping_bounds_the_update() -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    stepper = _stepper(model, lr=1.0, grad_clip=0.1)
    stepper.train_epoch([(torch.ones(4, 1), torch.full((4, 1), 100.0))], 1)
    assert abs(model.weight.item()) == pytest.approx(0.1, rel=1e-4)


def test_exploding_loss_marks_the_attempt_failed_with_its_reason(prefect_harness, workdir: Path,
                                                                 store_url: str) -> None:
    from flows.pipeline import train_classifier

    command, _ = validate_command(small_command(
        LABELS, epochs=2, optimizer={"name": "SGD", "lr": 1e30},
        acquire={"source": "synthetic", "per_label": 20, "image_size": 16}))
    state = train_classifier(command, return_state=True)
    assert state.is_failed()
    attempt = open_store(store_url).find_attempts("tiny")[-1]
    assert attempt["status"] == "failed" and "loss became" in attempt["reason"]
