"""One trainer entry point: `train(command, store, options) -> TrainResult`. Knows nothing of Prefect.

Epoch mode makes passes over the training split; seed mode (`command.steps`) makes that many steps on
random batches, grouped into rounds of one split's worth of steps so that validation, progress and
checkpoints happen at the same places in both. Each round ends with an atomic checkpoint; a re-run of the
same attempt (same command, same data) continues after the last one.
"""

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

from models.bundle import BundleSpec, save_bundle
from models.command import Command
from models.network import BuiltNetwork
from models.validation import build_network
from models.zoo import ZOO_LAYER, load_weights
from store import ImageStore
from tasks.training.data import Manifest, build_manifest
from tasks.training.device import (
    Precision,
    TrainingFailed,
    cpu_threads,
    make_scaler,
    pick_device,
    pick_precision,
    prepare_model,
)
from tasks.training.distributed import (
    DistContext,
    barrier,
    init_distributed,
    rank_device,
    reduce_stats,
    reduce_sum,
    unwrap_model,
    wrap_model,
)
from tasks.training.pipeline import Loaders, build_loaders
from tasks.training.resume import Checkpointer, EarlyStopping, Objectives, build_objectives
from tasks.training.steps import Stepper

__all__ = ["TrainOptions", "TrainResult", "TrainingFailed", "pick_device", "seed_everything", "train"]


@dataclass
class TrainOptions:
    runs_dir: Path
    attempt_id: str
    device: str = "auto"
    workers: int = -1
    on_epoch: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None  # (entry, history so far)
    amp: str = "auto"  # auto (bf16, else fp16, on CUDA), bf16, fp16, off
    balanced: bool = False  # sample each label equally often
    grad_clip: float | None = None  # max gradient norm
    warmup_steps: int = 0  # linear lr warmup over the first steps
    patience: int | None = None  # early stopping: rounds without a better val loss; keeps the best weights
    cache_mb: int = 2048  # decoded-image cache limit; larger datasets decode every epoch
    resume: bool = True


@dataclass
class TrainResult:
    bundle_dir: Path
    history: list[dict[str, Any]]
    manifest: Manifest
    device: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def round_plan(command: Command, n_train: int) -> list[int | None]:
    """Per round: None = one pass over the split (epoch mode), or the number of random draws (seed mode)."""
    if command.steps is None:
        return [None] * command.epochs
    per_round = max(1, math.ceil(n_train / command.batch_size))
    rounds = math.ceil(command.steps / per_round)
    steps = [per_round] * (rounds - 1) + [command.steps - per_round * (rounds - 1)]
    return [s * command.batch_size for s in steps]


def _check_manifest(manifest: Manifest) -> None:
    empty = [label for label, counts in manifest.counts().items() if counts["train"] == 0]
    if empty:
        raise TrainingFailed(f"no training images in the store for label(s) {empty}; acquire or import some first")


def _pretrained(command: Command, module: torch.nn.Module, layers: list[dict[str, Any]]) -> dict[str, Any]:
    if not command.model.weights:
        return {}
    zoo_name = layers[0]["model"] if len(layers) == 1 and layers[0].get("name") == ZOO_LAYER else None
    return load_weights(module, command.model.weights, zoo_name)


def _entry(round_no: int, plan: list[int | None], seconds: float, train: dict, val: dict, lr: float) -> dict:
    return {
        "epoch": round_no, "epochs": len(plan), "seconds": round(seconds, 3), "images": train["images"],
        "images_per_s": round(train["images"] / max(seconds, 1e-9), 1), "lr": lr,
        "train_loss": train["loss"], "train_accuracy": train["accuracy"],
        "val_loss": val.get("loss"), "val_accuracy": val.get("accuracy"),
    }


def _run_rounds(stepper: Stepper, loaders: Loaders, plan: list[int | None], ckpt: Checkpointer,
                stopper: EarlyStopping, options: TrainOptions, ctx: DistContext) -> None:
    for round_no in range(ckpt.state.epoch + 1, len(plan) + 1):
        if stopper.should_stop():
            break
        started = time.perf_counter()
        loaders.sampler.set_epoch(round_no, plan[round_no - 1])
        train_stats = reduce_stats(stepper.train_epoch(loaders.train, round_no), ctx)
        val_stats = stepper.evaluate(loaders.val) if loaders.val is not None else {}
        ckpt.step_epoch_scheduler(val_stats.get("loss", train_stats["loss"]))
        lr = stepper.optimizer.param_groups[0]["lr"]
        entry = _entry(round_no, plan, time.perf_counter() - started, train_stats, val_stats, lr)
        ckpt.state.history.append(entry)
        stopper.observe(round_no, val_stats.get("loss"), stepper.model)
        # before the callback: what is reported is already durable
        ckpt.save(round_no, stepper, stopper, write=ctx.is_main)
        if options.on_epoch and ctx.is_main:
            options.on_epoch(entry, list(ckpt.state.history))


def _check_same_start(resumed_from: int, ctx: DistContext) -> None:
    """Ranks that resumed from different checkpoints would run different numbers of rounds and wait on each
    other forever; fail at once instead (torchrun then stops every rank)."""
    if ctx.distributed and reduce_sum(float(resumed_from), ctx) != resumed_from * ctx.world_size:
        raise TrainingFailed("the ranks found different checkpoints of this attempt: SERPTRAIN_RUNS_DIR must be "
                             "one folder that every node sees")


def _build_stepper(command: Command, built: BuiltNetwork, device: torch.device, precision: Precision,
                   options: TrainOptions, ctx: DistContext) -> tuple[Stepper, Objectives]:
    model = wrap_model(prepare_model(built.module, device, precision), ctx)
    objectives = build_objectives(command, model)
    stepper = Stepper(model, objectives.criterion, objectives.optimizer, make_scaler(device, precision), device,
                      precision, command.batch_size, options.grad_clip, options.warmup_steps,
                      objectives.batch_scheduler)
    return stepper, objectives


def train(command: Command, store: ImageStore, options: TrainOptions) -> TrainResult:
    """Train on the store's training split, validate on its val split, write the bundle.

    Under torchrun (WORLD_SIZE > 1) every rank calls this: it joins the process group, trains its shard of
    each epoch under DistributedDataParallel, and rank 0 alone writes checkpoints and the bundle.
    """
    started = time.perf_counter()
    ctx = init_distributed(options.device)
    seed_everything(command.seed)
    device = rank_device(pick_device(options.device), ctx)
    precision = pick_precision(device, options.amp)
    manifest = build_manifest(store, command.label_names())
    _check_manifest(manifest)
    loaders = build_loaders(command, store.url, manifest, options.workers, device, options.balanced,
                            options.cache_mb * 2**20, ctx)
    built = build_network(command, loaders.input_shape)
    pretrained = _pretrained(command, built.module, built.layers)
    stepper, objectives = _build_stepper(command, built, device, precision, options, ctx)
    bundle_dir = Path(options.runs_dir) / command.model_name / options.attempt_id
    ckpt = Checkpointer(bundle_dir / "checkpoints", command, manifest.digest(), objectives)
    stopper = EarlyStopping(options.patience, bundle_dir / "checkpoints", write=ctx.is_main)
    resumed_from = ckpt.resume(stepper, stopper) if options.resume else 0
    _check_same_start(resumed_from, ctx)
    plan = round_plan(command, len(manifest.items["train"]))
    try:
        with cpu_threads(device, loaders.cache_report["workers"]):
            _run_rounds(stepper, loaders, plan, ckpt, stopper, options, ctx)
    finally:
        loaders.close()
    model = unwrap_model(stepper.model)
    best_epoch = stopper.restore_best(model) if ctx.is_main else None
    if ctx.is_main:
        spec = BundleSpec(
            model_name=command.model_name, attempt_id=options.attempt_id, labels=command.label_names(),
            layers=built.layers, input_shape=list(loaders.input_shape), image_ops=command.image_ops,
            transform=command.transform, manifest_hash=manifest.digest(),
        )
        save_bundle(bundle_dir, model.cpu(), spec)
    barrier(ctx)  # no rank reports done before the bundle exists
    extra = {"resumed_from_epoch": resumed_from, "best_epoch": best_epoch, "stopped_early": stopper.stopped,
             "precision": precision.name, "cache": loaders.cache_report, "pretrained": pretrained,
             "steps": stepper.global_step, "world_size": ctx.world_size}
    return TrainResult(bundle_dir, ckpt.state.history, manifest, str(device), time.perf_counter() - started, extra)
