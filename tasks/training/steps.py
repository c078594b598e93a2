"""One pass over a loader: forward, loss, backward with scaling, clipping and warmup; or evaluation only."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from tasks.training.device import Precision, TrainingFailed, autocast, explain_oom, to_device
from tasks.training.distributed import unwrap_model

CUDA_CHECK_EVERY = 16  # on CUDA reading the loss forces a sync; check for NaN every few steps instead


@dataclass
class Stepper:
    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: Precision
    batch_size: int
    grad_clip: float | None = None
    warmup_steps: int = 0
    batch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # OneCycleLR steps per batch
    global_step: int = 0

    def _warmup_factor(self) -> float:
        if self.global_step >= self.warmup_steps:
            return 1.0
        return (self.global_step + 1) / self.warmup_steps

    def _optimizer_step(self) -> None:
        # Warmup scales the lr around the step only, so the user's scheduler never sees the scaled value.
        factor = self._warmup_factor()
        saved = [group["lr"] for group in self.optimizer.param_groups]
        if factor != 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] = group["lr"] * factor
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        for group, lr in zip(self.optimizer.param_groups, saved, strict=True):
            group["lr"] = lr
        if self.batch_scheduler is not None:
            self.batch_scheduler.step()
        self.global_step += 1

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        value = loss_sum.item()
        if not math.isfinite(value):
            raise TrainingFailed(
                f"the training loss became {'nan' if math.isnan(value) else 'inf'} in epoch {epoch} by step {step} "
                f"(lr {self.optimizer.param_groups[0]['lr']:.3g}); lower optimizer.lr, add gradient clipping "
                "or check the images")

    def train_epoch(self, loader: Iterable, epoch: int) -> dict[str, float]:
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        check_every = CUDA_CHECK_EVERY if self.device.type == "cuda" else 1
        with explain_oom(self.batch_size, self.device):
            for step, (images, targets) in enumerate(loader, start=1):
                images = to_device(images, self.device, self.precision)
                targets = targets.to(self.device, non_blocking=True)
                with autocast(self.device, self.precision):
                    outputs = self.model(images)
                    loss = self.criterion(outputs, targets)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                loss_sum += loss.detach().float() * len(targets)
                if step % check_every == 0:
                    self._check_finite(loss_sum, epoch, step)
                self._optimizer_step()
                correct += (outputs.detach().argmax(1) == targets).sum()
                seen += len(targets)
        self._check_finite(loss_sum, epoch, seen)
        return {"loss": loss_sum.item() / max(seen, 1), "accuracy": correct.item() / max(seen, 1), "images": seen}

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        model = unwrap_model(self.model)  # every rank sees the whole val split: no collectives needed
        model.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        with torch.no_grad(), explain_oom(self.batch_size, self.device):
            for images, targets in loader:
                images = to_device(images, self.device, self.precision)
                targets = targets.to(self.device, non_blocking=True)
                with autocast(self.device, self.precision):
                    outputs = model(images)
                    loss = self.criterion(outputs, targets)
                loss_sum += loss.float().item() * len(targets)
                correct += (outputs.argmax(1) == targets).sum().item()
                seen += len(targets)
        return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1), "images": seen}
