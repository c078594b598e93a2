"""Evaluation step: the held-out test split of the training manifest, metrics.json in the bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from models.bundle import read_spec, write_json_atomic
from store import open_store
from tasks.evaluation import evaluate_keys


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    return json.loads((bundle_dir / "manifest.json").read_text())


@task(name="evaluate-model")
def evaluate_model(bundle_dir: str, history: list[dict[str, Any]], store_url: str | None = None) -> dict[str, Any]:
    directory = Path(bundle_dir)
    store = open_store(store_url)
    manifest = read_manifest(directory)
    labels = manifest["labels"]
    test_items = [(key, index) for key, index in manifest["splits"]["test"]]
    test = evaluate_keys(directory, store, test_items, labels)
    metrics = {"test": test, "history": history}
    write_json_atomic(directory / "metrics.json", metrics)
    spec = read_spec(directory)
    spec.metrics = {"test_accuracy": test["accuracy"], "test_images": test["images"]}
    write_json_atomic(directory / "model.json", spec.__dict__)
    get_run_logger().info("test accuracy %.3f on %d held-out images", test["accuracy"], test["images"])
    return metrics
