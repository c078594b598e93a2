"""Training step: the trainer wrapped as a Prefect task, with progress in logs, an artifact and the attempt."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from models.command import Command
from models.errors import UserError
from models.settings import Settings, load_settings
from models.zoo import fetch_weights, is_zoo_model
from store import ImageStore, open_store
from tasks.training.launch import run_distributed, wants_distributed
from tasks.training.loop import TrainOptions, train


def train_options(settings: Settings, attempt_id: str, command: Command) -> TrainOptions:
    """The machine's settings (device, workers, cache) and the command's training section → trainer options."""
    spec = command.training
    return TrainOptions(
        settings.runs_dir, attempt_id, settings.device, settings.num_workers,
        amp=spec.amp, balanced=spec.balanced_sampling, grad_clip=spec.grad_clip,
        warmup_steps=spec.warmup_steps, patience=spec.patience, cache_mb=settings.cache_mb,
    )


def _log_epoch(logger: Any, entry: dict[str, Any], history: list[dict[str, Any]], command: Command) -> None:
    val = entry["val_accuracy"]
    if command.steps:  # seed mode: say how many of the asked-for steps are done, not only the round
        done = min(command.steps, math.ceil(sum(e["images"] for e in history) / command.batch_size))
        where = f"round {entry['epoch']}/{entry['epochs']} (step {done}/{command.steps})"
    else:
        where = f"epoch {entry['epoch']}/{entry['epochs']}"
    logger.info(
        "%s  train loss %.4f acc %.3f  val acc %s  %.0f img/s (%.1fs)", where,
        entry["train_loss"], entry["train_accuracy"], "n/a" if val is None else f"{val:.3f}",
        entry["images_per_s"], entry["seconds"],
    )


@task(name="fetch-weights")
def fetch_pretrained_weights(command: Command) -> bool:
    """torchvision weights into torch's cache before any image is scraped: no network fails the run early."""
    preset = command.model.preset
    return fetch_weights(command.model.weights, preset if is_zoo_model(preset) else None)


@task(name="train-model")
def train_model(command: Command, attempt_id: str, store_url: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    settings = load_settings()
    store = open_store(store_url)
    progress_id = create_progress_artifact(0.0, description=f"training {command.model_name} ({attempt_id})")

    def on_epoch(entry: dict[str, Any], history: list[dict[str, Any]]) -> None:
        _log_epoch(logger, entry, history, command)
        update_progress_artifact(progress_id, 100.0 * entry["epoch"] / entry["epochs"])
        store.update_attempt(attempt_id, status="training", epochs=history)

    store.update_attempt(attempt_id, status="training")
    options = train_options(settings, attempt_id, command)
    options.on_epoch = on_epoch
    try:
        summary = run_training(command, attempt_id, store, store_url, settings, options, logger)
    except UserError as exc:
        store.update_attempt(attempt_id, status="failed", reason=str(exc)[:2000])
        raise
    if summary["training"].get("resumed_from_epoch"):
        logger.info("resumed from the checkpoint of epoch %d", summary["training"]["resumed_from_epoch"])
    manifest_path = Path(summary["bundle_dir"]) / "manifest.json"
    manifest_path.write_text(json.dumps(summary.pop("manifest")))
    update_progress_artifact(progress_id, 100.0)
    store.update_attempt(
        attempt_id, status="trained", bundle_dir=summary["bundle_dir"], epochs=summary["history"],
        manifest={"hash": summary["manifest_hash"], "counts": summary["counts"], "path": str(manifest_path)},
        timings={"train_seconds": summary["seconds"]}, device=summary["device"], training=summary["training"],
    )
    return summary


def run_training(command: Command, attempt_id: str, store: ImageStore, store_url: str | None, settings: Settings,
                 options: TrainOptions, logger: Any) -> dict[str, Any]:
    """In this process, or on torchrun ranks when SERPTRAIN_NPROC_PER_NODE / SERPTRAIN_NNODES ask for more
    than one; both give the same summary (with the manifest, which the caller writes into the bundle)."""
    if wants_distributed(settings):
        return run_distributed(command, attempt_id, store_url, settings, options, options.on_epoch, logger.info)
    result = train(command, store, options)
    return {
        "bundle_dir": str(result.bundle_dir), "history": result.history, "device": result.device,
        "seconds": round(result.seconds, 2), "counts": result.manifest.counts(),
        "manifest_hash": result.manifest.digest(), "training": result.extra,
        "manifest": {"labels": result.manifest.labels, "splits": result.manifest.items},
    }
