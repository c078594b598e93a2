"""The main flow: validate → acquire → ingest → train → evaluate → publish.

Orchestration only: which tasks, in what order. Every step's logic lives in tasks/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from models.command import Command
from models.errors import UserError
from models.settings import load_settings
from store import open_store
from tasks.attempts import set_attempt_status, start_attempt
from tasks.evaluate import evaluate_model
from tasks.ingest import ingest_folder
from tasks.publish import publish
from tasks.synthetic import generate_synthetic
from tasks.train import fetch_pretrained_weights, train_model
from tasks.validate import validate

MIN_IMAGES_PER_LABEL = 3


def labels_missing_images(command: Command, store_url: str | None) -> list[str]:
    store = open_store(store_url)
    return [name for name in command.label_names() if store.count(name, "train") < MIN_IMAGES_PER_LABEL]


def choose_source(command: Command, store_url: str | None) -> str:
    source = command.acquire.source
    if source != "auto":
        return source
    missing = labels_missing_images(command, store_url)
    if not missing:
        return "store"
    from flows.acquire import resolve_api_key

    try:
        resolve_api_key()  # SERPAPI_API_KEY or the Prefect Secret block
    except UserError:
        raise UserError(
            f"label(s) {missing} have no images in the store and no acquisition source is configured: "
            "set SERPAPI_API_KEY, use acquire.source: synthetic, or `serptrain import-folder DIR`"
        ) from None
    return "serpapi"


def acquire_synthetic(command: Command, store_url: str | None) -> dict[str, Any]:
    spec = command.acquire
    root = load_settings().data_dir / "synthetic" / f"seed{spec.seed}-{spec.image_size}px-{spec.per_label}"
    folder = generate_synthetic(str(root), command.label_names(), spec.per_label, spec.image_size, spec.seed)
    return ingest_folder(folder, store_url, command.label_names())


def acquire_serpapi(command: Command, store_url: str | None) -> dict[str, Any]:
    from flows.acquire import acquire_for_command

    return acquire_for_command(command, store_url)


def acquire(command: Command, store_url: str | None) -> dict[str, Any]:
    source = choose_source(command, store_url)
    get_run_logger().info("image source: %s", source)
    if source == "synthetic":
        return acquire_synthetic(command, store_url)
    if source == "serpapi":
        return acquire_serpapi(command, store_url)
    if command.acquire.source == "store":  # "auto" chose the store because nothing was missing
        missing = labels_missing_images(command, store_url)
        if missing:
            raise UserError(f"acquire.source is 'store' but label(s) {missing} have no training images there")
    return {}


# Results are persisted as JSON (never pickled) under Prefect's local result storage, whose path is
# PREFECT_LOCAL_STORAGE_PATH (default $PREFECT_HOME/storage); the tasks inherit this unless they opt out (the
# downloads do), so a retried run reads finished steps back instead of redoing them, on any worker sharing
# that path. No flow-level retries here: a manual run fails on a bad command or missing data, which a retry
# would only repeat; the network-facing tasks retry themselves, and the unattended flows (flows/retrain.py)
# retry around this one.
@flow(name="train-classifier", log_prints=True, persist_result=True, result_serializer="json")
def train_classifier(
    command: Command, store_url: str | None = None, attempt_id: str | None = None
) -> dict[str, Any]:
    """Validate a training command, gather its images, train, evaluate on the test split, publish.

    `attempt_id` names an earlier attempt to take up again: training resumes from its last checkpoint.
    """
    report = validate(command)
    attempt_id = start_attempt(command, store_url, attempt_id)
    try:
        if command.model.weights:
            fetch_pretrained_weights(command)
        set_attempt_status(attempt_id, "acquiring", store_url, dry_run=report)
        ingest = acquire(command, store_url)
        trained = train_model(command, attempt_id, store_url)
        metrics = evaluate_model(trained["bundle_dir"], trained["history"], store_url)
        set_attempt_status(attempt_id, "evaluated", store_url, metrics={"test": metrics["test"]})
        publish(command.model_name, attempt_id, trained, metrics)
    except BaseException as exc:
        set_attempt_status(attempt_id, "failed", store_url, reason=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return {
        "attempt_id": attempt_id, "model_name": command.model_name, "bundle_dir": trained["bundle_dir"],
        "counts": trained["counts"], "epochs": len(trained["history"]), "device": trained["device"],
        "steps": command.steps,  # seed mode: random-batch steps, made in rounds (the "epochs" above)
        "train_seconds": trained["seconds"], "test_accuracy": metrics["test"]["accuracy"],
        "test_images": metrics["test"]["images"], "ingest": ingest, "bundle": str(Path(trained["bundle_dir"])),
    }
