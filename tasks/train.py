"""Training step: the trainer wrapped as a Prefect task, with progress in logs and an artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from models.command import Command
from models.settings import load_settings
from store import open_store
from tasks.training.loop import TrainOptions, train


@task(name="train-model")
def train_model(command: Command, attempt_id: str, store_url: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    settings = load_settings()
    store = open_store(store_url)
    progress_id = create_progress_artifact(0.0, description=f"training {command.model_name} ({attempt_id})")

    def on_epoch(entry: dict[str, Any]) -> None:
        val = entry["val_accuracy"]
        logger.info(
            "epoch %d/%d  train loss %.4f acc %.3f  val acc %s  (%.1fs)", entry["epoch"], entry["epochs"],
            entry["train_loss"], entry["train_accuracy"], "n/a" if val is None else f"{val:.3f}", entry["seconds"],
        )
        update_progress_artifact(progress_id, 100.0 * entry["epoch"] / entry["epochs"])
        store.update_attempt(attempt_id, status="training", epochs=history_so_far + [entry])
        history_so_far.append(entry)

    history_so_far: list[dict[str, Any]] = []
    store.update_attempt(attempt_id, status="training")
    options = TrainOptions(settings.runs_dir, attempt_id, settings.device, settings.num_workers, on_epoch)
    result = train(command, store, options)
    manifest_path = Path(result.bundle_dir) / "manifest.json"
    manifest_path.write_text(json.dumps({"labels": result.manifest.labels, "splits": result.manifest.items}))
    summary = {
        "bundle_dir": str(result.bundle_dir), "history": result.history, "device": result.device,
        "seconds": round(result.seconds, 2), "counts": result.manifest.counts(),
        "manifest_hash": result.manifest.digest(),
    }
    store.update_attempt(
        attempt_id, status="trained", bundle_dir=summary["bundle_dir"], epochs=result.history,
        manifest={"hash": summary["manifest_hash"], "counts": summary["counts"], "path": str(manifest_path)},
        timings={"train_seconds": summary["seconds"]}, device=result.device,
    )
    return summary
