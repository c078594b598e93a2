"""What survives a crash: loss/optimizer/scheduler built from the command, per-round checkpoints, early stopping."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.catalog import LOSSES, OPTIMIZERS, SCHEDULERS
from models.command import Command
from models.preprocess import call_params
from tasks.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tasks.training.distributed import unwrap_model
from tasks.training.steps import Stepper

LAST = "last.safetensors"
BEST = "best.safetensors"
Plateau = torch.optim.lr_scheduler.ReduceLROnPlateau
PER_BATCH_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR,)  # designed to step every batch


@dataclass
class Objectives:
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None  # stepped once per round
    batch_scheduler: Any = None  # stepped once per optimizer step


def build_objectives(command: Command, model: nn.Module) -> Objectives:
    criterion = LOSSES.get(command.criterion.name).target(**call_params(command.criterion.params()))
    optimizer = OPTIMIZERS.get(command.optimizer.name).target(
        model.parameters(), **call_params(command.optimizer.params()))
    if command.scheduler is None:
        return Objectives(criterion, optimizer)
    scheduler = SCHEDULERS.get(command.scheduler.name).target(optimizer, **call_params(command.scheduler.params()))
    if isinstance(scheduler, PER_BATCH_SCHEDULERS):
        return Objectives(criterion, optimizer, None, scheduler)
    return Objectives(criterion, optimizer, scheduler, None)


def command_digest(command: Command) -> str:
    return hashlib.sha256(json.dumps(command.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class EarlyStopping:
    """Stops after `patience` rounds without a lower val loss; the best weights are kept on disk."""

    def __init__(self, patience: int | None, directory: Path, write: bool = True):
        self.patience = patience
        self.write = write  # rank 0 only in a distributed run; every rank still decides alike
        self.path = directory / BEST
        self.best_loss: float | None = None
        self.best_epoch = 0
        self.bad_rounds = 0
        self.stopped = False

    def observe(self, epoch: int, val_loss: float | None, model: nn.Module) -> None:
        if self.patience is None or val_loss is None:
            return
        if self.best_loss is None or val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_rounds = val_loss, epoch, 0
            if not self.write:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{BEST}.tmp")
            save_file(cpu_state(unwrap_model(model)), str(tmp))
            tmp.replace(self.path)
        else:
            self.bad_rounds += 1

    def should_stop(self) -> bool:
        self.stopped = self.patience is not None and self.bad_rounds >= self.patience
        return self.stopped

    def restore_best(self, model: nn.Module) -> int | None:
        if self.patience is None or not self.best_epoch or not self.path.exists():
            return None
        device = next(model.parameters()).device
        unwrap_model(model).load_state_dict(load_file(str(self.path), device=str(device)))
        return self.best_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "bad_rounds": self.bad_rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss, self.best_epoch, self.bad_rounds = state["best_loss"], state["best_epoch"], state["bad_rounds"]


@dataclass
class RunState:
    epoch: int = 0  # the last completed round
    history: list[dict[str, Any]] = field(default_factory=list)


class Checkpointer:
    """checkpoints/last.safetensors: everything needed to continue exactly where the last round ended."""

    def __init__(self, directory: Path, command: Command, manifest_digest: str, objectives: Objectives):
        self.path = directory / LAST
        self.identity = {"command": command_digest(command), "manifest": manifest_digest}
        self.objectives = objectives
        self.state = RunState()
        self.skipped_reason = ""

    def step_epoch_scheduler(self, monitored_loss: float) -> None:
        scheduler = self.objectives.scheduler
        if scheduler is None:
            return
        scheduler.step(monitored_loss) if isinstance(scheduler, Plateau) else scheduler.step()

    def _schedulers(self) -> dict[str, Any]:
        return {name: s for name, s in (("scheduler", self.objectives.scheduler),
                                        ("batch_scheduler", self.objectives.batch_scheduler)) if s is not None}

    def save(self, epoch: int, stepper: Stepper, stopper: EarlyStopping, write: bool = True) -> None:
        self.state.epoch = epoch
        if not write:  # not rank 0
            return
        save_checkpoint(self.path, {
            "identity": self.identity, "epoch": epoch, "global_step": stepper.global_step,
            "history": self.state.history, "model": unwrap_model(stepper.model).state_dict(),
            "optimizer": stepper.optimizer.state_dict(), "scaler": stepper.scaler.state_dict(),
            "schedulers": {n: s.state_dict() for n, s in self._schedulers().items()},
            "early_stopping": stopper.state_dict(), "rng": rng_state(),
        })

    def resume(self, stepper: Stepper, stopper: EarlyStopping) -> int:
        """Load the last checkpoint of this attempt when it belongs to the same command and data."""
        if not self.path.exists():
            return 0
        saved = load_checkpoint(self.path)
        if saved["identity"] != self.identity:
            self.skipped_reason = "the command or the dataset changed since the checkpoint; starting over"
            return 0
        device = next(stepper.model.parameters()).device
        unwrap_model(stepper.model).load_state_dict({k: v.to(device) for k, v in saved["model"].items()})
        stepper.optimizer.load_state_dict(saved["optimizer"])
        stepper.scaler.load_state_dict(saved["scaler"])
        for name, scheduler in self._schedulers().items():
            scheduler.load_state_dict(saved["schedulers"][name])
        stopper.load_state_dict(saved["early_stopping"])
        set_rng_state(saved["rng"])
        stepper.global_step = saved["global_step"]
        self.state = RunState(saved["epoch"], saved["history"])
        return saved["epoch"]
