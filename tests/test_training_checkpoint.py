"""Checkpoints: everything round-trips without pickle, writes are atomic, early stopping keeps the best."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tasks.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tasks.training.resume import EarlyStopping


def _trained_objects() -> tuple[nn.Module, torch.optim.Optimizer, list]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    schedulers = [torch.optim.lr_scheduler.StepLR(optimizer, 2),
                  torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer),
                  torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=20)]
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        schedulers[0].step()
        schedulers[1].step(1.0)
        schedulers[2].step()
    return model, optimizer, schedulers


def test_state_round_trips_and_the_file_is_safetensors(tmp_path: Path) -> None:
    model, optimizer, schedulers = _trained_objects()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "schedulers": [s.state_dict() for s in schedulers], "rng": rng_state(), "epoch": 3}
    path = save_checkpoint(tmp_path / "last.safetensors", state)
    expected_rand = (torch.rand(3), np.random.rand(), random.random())

    raw = path.read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])  # safetensors: JSON header, raw tensors
    assert "state" in header["__metadata__"] and not (tmp_path / ".last.safetensors.tmp").exists()

    back = load_checkpoint(path)
    fresh, fresh_optimizer, fresh_schedulers = _trained_objects()
    fresh.load_state_dict(back["model"])
    fresh_optimizer.load_state_dict(back["optimizer"])
    for scheduler, saved in zip(fresh_schedulers, back["schedulers"], strict=True):
        scheduler.load_state_dict(saved)
    assert back["epoch"] == 3
    assert set(back["optimizer"]["state"]) == set(optimizer.state_dict()["state"])  # int keys kept
    moments = [o.state_dict()["state"][0]["exp_avg"] for o in (fresh_optimizer, optimizer)]
    assert torch.equal(*moments)
    assert [s.state_dict()["last_epoch"] for s in fresh_schedulers] == [s.last_epoch for s in schedulers]
    set_rng_state(back["rng"])
    assert torch.equal(torch.rand(3), expected_rand[0])
    assert (np.random.rand(), random.random()) == expected_rand[1:]


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last.safetensors", {"epoch": 1, "w": torch.ones(2)})
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(2), "oops": object()})
    assert load_checkpoint(path)["epoch"] == 1


def test_early_stopping_stops_after_patience_and_restores_the_best(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2, directory=tmp_path)
    best_weights = None
    for epoch, loss in enumerate([1.0, 0.5, 0.7, 0.9], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        if epoch == 2:
            best_weights = model.weight.clone()
        stopper.observe(epoch, loss, model)
        assert stopper.should_stop() is (epoch == 4)
    assert stopper.restore_best(model) == 2 and torch.equal(model.weight, best_weights)


def test_trainer_with_patience_ships_the_best_validation_epoch(workdir: Path, store_url: str) -> None:
    from safetensors.torch import load_file

    from models.validation import validate_command
    from store import open_store
    from tasks.training.loop import TrainOptions, train
    from tests.helpers import fill_synthetic, small_command

    fill_synthetic(store_url, workdir / "images", ["circle", "square"], per_label=20, size=16)
    command, _ = validate_command(small_command(["circle", "square"], epochs=3))
    result = train(command, open_store(store_url), TrainOptions(workdir / "runs", "es", workers=0, patience=5))
    losses = [entry["val_loss"] for entry in result.history]
    assert result.extra["best_epoch"] == losses.index(min(losses)) + 1
    shipped = load_file(str(result.bundle_dir / "model.safetensors"))
    best = load_file(str(result.bundle_dir / "checkpoints" / "best.safetensors"))
    assert all(torch.equal(shipped[k], best[k]) for k in best)
