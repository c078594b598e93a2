"""Evaluation step: the held-out test split of the training manifest → metrics.json and PNGs in the bundle."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from models.bundle import load_bundle, write_json_atomic
from models.errors import UserError
from models.settings import load_settings
from store import ImageStore, open_store
from tasks.evaluation import evaluate_items
from tasks.plots import confusion_matrix_png, curves_png, top_losses_png
from tasks.training.data import decode_image
from tasks.training.device import pick_device

PICTURES = ("confusion_matrix.png", "curves.png", "top_losses.png")


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    return json.loads((bundle_dir / "manifest.json").read_text())


def draw_pictures(directory: Path, store: ImageStore, test: dict[str, Any], history: list[dict[str, Any]],
                  wrong: list[dict[str, Any]]) -> list[Path]:
    paths = [confusion_matrix_png(directory / PICTURES[0], test["confusion_matrix"], test["labels"])]
    if history:
        paths.append(curves_png(directory / PICTURES[1], history))
    blobs = store.get_many([entry["key"] for entry in wrong])
    shown = [entry for entry in wrong if entry["key"] in blobs]
    paths.append(top_losses_png(directory / PICTURES[2], shown, [decode_image(blobs[e["key"]]) for e in shown]))
    return paths


def evaluate_bundle(directory: Path, store: ImageStore, items: list[tuple[str, int]],
                    history: list[dict[str, Any]] | None = None, device: str = "cpu",
                    write: bool = True) -> dict[str, Any]:
    """Metrics of the bundle on items; with write, metrics.json, the PNGs and model.json's metrics too."""
    module, spec = load_bundle(directory, device)
    test, wrong = evaluate_items(module, spec, store, items)
    metrics = {"test": test, "top_losses": wrong, "history": history or []}
    if write:
        draw_pictures(directory, store, test, history or [], wrong)
        write_json_atomic(directory / "metrics.json", metrics)
        spec.metrics = {"test_accuracy": test["accuracy"], f"test_top{test['top_k']}_accuracy":
                        test[f"top{test['top_k']}_accuracy"], "test_macro_f1": test["macro_f1"],
                        "test_images": test["images"]}
        write_json_atomic(directory / "model.json", spec.__dict__)
    return metrics


@task(name="evaluate-model")
def evaluate_model(bundle_dir: str, history: list[dict[str, Any]], store_url: str | None = None) -> dict[str, Any]:
    directory = Path(bundle_dir)
    manifest = read_manifest(directory)
    test_items = [(key, index) for key, index in manifest["splits"]["test"]]
    device = str(pick_device(load_settings().device))
    metrics = evaluate_bundle(directory, open_store(store_url), test_items, history, device)
    test = metrics["test"]
    get_run_logger().info("test accuracy %.3f (top-%d %.3f) on %d held-out images", test["accuracy"],
                          test["top_k"], test[f"top{test['top_k']}_accuracy"], test["images"])
    return metrics


def select_items(store: ImageStore, labels: list[str], wanted: list[str] | None = None, ids: list[str] | None = None,
                 limit: int | None = None, split: str | None = "test", seed: int = 0) -> list[tuple[str, int]]:
    """(key, label index) pairs to evaluate on: the given image ids, or random images of the wanted labels
    (default: all the bundle's labels) from a split (None: all splits), at most `limit` in all."""
    names = wanted or labels
    unknown = [name for name in names if name not in labels]
    if unknown:
        raise UserError(f"label(s) {unknown} are not labels of this model; its labels: {labels}")
    if ids:
        items = []
        for key in ids:
            meta = store.get_meta(key)
            if meta is None:
                raise UserError(f"image {key!r} is not in the store")
            label = next((name for name in names if name in meta.labels), None)
            if label is None:
                raise UserError(f"image {key[:12]} carries label(s) {meta.labels}, none of {names}")
            items.append((key, labels.index(label)))
    else:
        items = [(key, labels.index(name)) for name in names for key in store.keys(name, split)]
    random.Random(seed).shuffle(items)
    return items[:limit] if limit else items
