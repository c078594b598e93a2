"""One trainer entry point: `train(command, store, options) -> TrainResult`. Knows nothing of Prefect."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.bundle import BundleSpec, save_bundle
from models.catalog import LOSSES, OPTIMIZERS, SCHEDULERS
from models.command import Command
from models.errors import UserError
from models.preprocess import build_preprocess, call_params
from models.validation import build_network
from store import ImageStore
from tasks.training.data import Manifest, StoreImageDataset, build_manifest, default_workers, make_loader


class TrainingFailed(UserError):
    """Training stopped for a reason the user can act on (NaN loss, no data, out of memory)."""


@dataclass
class TrainOptions:
    runs_dir: Path
    attempt_id: str
    device: str = "auto"
    workers: int = -1
    on_epoch: Callable[[dict[str, Any]], None] | None = None


@dataclass
class TrainResult:
    bundle_dir: Path
    history: list[dict[str, Any]]
    manifest: Manifest
    device: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_manifest(manifest: Manifest) -> None:
    empty = [label for label, counts in manifest.counts().items() if counts["train"] == 0]
    if empty:
        raise TrainingFailed(f"no training images in the store for label(s) {empty}; acquire or import some first")


def _run_epoch(
    model: nn.Module, loader: Any, criterion: nn.Module, device: torch.device,
    optimizer: torch.optim.Optimizer | None,
) -> dict[str, float]:
    training = optimizer is not None
    model.train(training)
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for images, targets in loader:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            outputs = model(images)
            loss = criterion(outputs, targets)
            if not math.isfinite(loss.item()):
                raise TrainingFailed(f"the loss became {loss.item()} (lower optimizer.lr or check the data)")
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(targets)
            correct += (outputs.argmax(1) == targets).sum().item()
            seen += len(targets)
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1), "images": seen}


def train(command: Command, store: ImageStore, options: TrainOptions) -> TrainResult:
    started = time.perf_counter()
    seed_everything(command.seed)
    device = pick_device(options.device)
    manifest = build_manifest(store, command.label_names())
    _check_manifest(manifest)
    preprocess = build_preprocess(command.image_ops, command.transform)
    train_set = StoreImageDataset(store.url, manifest.items["train"], preprocess)
    val_set = StoreImageDataset(store.url, manifest.items["val"], preprocess.without_augmentation())
    input_shape = tuple(val_set.preprocess(train_set.load_image(0)).shape)
    built = build_network(command, input_shape)
    model = built.module.to(device)
    criterion = LOSSES.get(command.criterion.name).target(**call_params(command.criterion.params()))
    optimizer = OPTIMIZERS.get(command.optimizer.name).target(
        model.parameters(), **call_params(command.optimizer.params()))
    scheduler = None
    if command.scheduler is not None:
        scheduler = SCHEDULERS.get(command.scheduler.name).target(optimizer, **call_params(command.scheduler.params()))
    workers = default_workers(options.workers)
    pin = device.type == "cuda"
    train_loader = make_loader(train_set, command.batch_size, True, workers, command.seed, pin)
    val_loader = make_loader(val_set, command.batch_size, False, 0, command.seed, pin)
    history: list[dict[str, Any]] = []
    for epoch in range(1, command.epochs + 1):
        epoch_start = time.perf_counter()
        train_stats = _run_epoch(model, train_loader, criterion, device, optimizer)
        val_stats = _run_epoch(model, val_loader, criterion, device, None) if len(val_set) else {}
        if scheduler is not None:
            scheduler.step(val_stats.get("loss", train_stats["loss"])) if isinstance(
                scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else scheduler.step()
        entry = {
            "epoch": epoch, "epochs": command.epochs, "seconds": round(time.perf_counter() - epoch_start, 3),
            "train_loss": train_stats["loss"], "train_accuracy": train_stats["accuracy"],
            "val_loss": val_stats.get("loss"), "val_accuracy": val_stats.get("accuracy"),
        }
        history.append(entry)
        if options.on_epoch:
            options.on_epoch(entry)
    bundle_dir = Path(options.runs_dir) / command.model_name / options.attempt_id
    spec = BundleSpec(
        model_name=command.model_name, attempt_id=options.attempt_id, labels=command.label_names(),
        layers=built.layers, input_shape=list(input_shape), image_ops=command.image_ops,
        transform=command.transform, manifest_hash=manifest.digest(),
    )
    save_bundle(bundle_dir, model.cpu(), spec)
    return TrainResult(bundle_dir, history, manifest, str(device), time.perf_counter() - started)
