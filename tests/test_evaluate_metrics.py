"""Evaluation numbers on known predictions, and the pictures and files an evaluation leaves in a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from models.validation import validate_command
from store import open_store
from tasks.evaluate import PICTURES, evaluate_bundle, select_items
from tasks.evaluation import classification_metrics, top_losses
from tasks.training.loop import TrainOptions, train
from tests.helpers import fill_synthetic, small_command

LABELS = ["a", "b", "c"]


def test_metrics_on_known_predictions() -> None:
    probs = torch.tensor([
        [0.8, 0.1, 0.1],  # a → a
        [0.6, 0.3, 0.1],  # a → a
        [0.5, 0.4, 0.1],  # b → a (b second)
        [0.1, 0.7, 0.2],  # b → b
        [0.1, 0.2, 0.7],  # c → c
        [0.2, 0.5, 0.3],  # c → b (c second)
    ])
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    m = classification_metrics(probs, targets, LABELS, top_k=2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["top2_accuracy"] == pytest.approx(1.0) and m["top_k"] == 2
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert m["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["c"]["precision"] == 1.0 and m["per_class"]["c"]["recall"] == 0.5

    wrong = top_losses(probs, targets, [f"k{i}" for i in range(6)], LABELS)
    assert [w["key"] for w in wrong] == ["k5", "k2"]  # p(true)=0.3 is a bigger loss than p(true)=0.4
    assert wrong[0] == pytest.approx({"key": "k5", "label": "c", "predicted": "b", "confidence": 0.5,
                                      "loss": -torch.log(torch.tensor(0.3)).item()})


def test_evaluation_writes_metrics_and_pictures(workdir: Path, store_url: str) -> None:
    labels = ["circle", "square"]
    fill_synthetic(store_url, workdir / "images", labels, per_label=20, size=16)
    store = open_store(store_url)
    command, _ = validate_command(small_command(labels, epochs=2))
    result = train(command, store, TrainOptions(workdir / "runs", "ev", workers=0))
    items = select_items(store, labels, split=None)
    metrics = evaluate_bundle(result.bundle_dir, store, items, result.history)

    written = json.loads((result.bundle_dir / "metrics.json").read_text())
    assert written["test"]["images"] == len(items) == metrics["test"]["images"]
    assert len(written["history"]) == 2
    assert json.loads((result.bundle_dir / "model.json").read_text())["metrics"]["test_images"] == len(items)
    for name in PICTURES:
        with Image.open(result.bundle_dir / name) as picture:
            assert picture.format == "PNG" and picture.width > 200
    assert select_items(store, labels, limit=3, split=None) == select_items(store, labels, limit=3, split=None)
    assert len(select_items(store, labels, wanted=["square"], split="train")) == store.count("square", "train")
