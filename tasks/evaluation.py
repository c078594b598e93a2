"""Evaluation of a bundle on store images: accuracy, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from models.bundle import load_bundle
from store import ImageStore


def _batches(keys: list[str], size: int) -> list[list[str]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


def predict_keys(bundle_dir: Path, store: ImageStore, keys: list[str]) -> torch.Tensor:
    """Class probabilities for each key, in order."""
    module, spec = load_bundle(bundle_dir)
    preprocess = spec.preprocess()
    outputs = []
    for chunk in _batches(keys, 64):
        blobs = store.get_many(chunk)
        tensors = []
        for key in chunk:
            with Image.open(io.BytesIO(blobs[key])) as image:
                image.seek(0)
                tensors.append(preprocess(image.convert("RGB")))
        with torch.no_grad():
            outputs.append(torch.softmax(module(torch.stack(tensors)), dim=1))
    return torch.cat(outputs) if outputs else torch.zeros((0, len(spec.labels)))


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, labels: list[str], top_k: int = 3) -> dict[str, Any]:
    n_classes = len(labels)
    predicted = probs.argmax(1) if len(probs) else torch.zeros(0, dtype=torch.long)
    confusion = torch.zeros((n_classes, n_classes), dtype=torch.long)
    for truth, guess in zip(targets.tolist(), predicted.tolist(), strict=True):
        confusion[truth, guess] += 1
    per_class = {}
    for index, label in enumerate(labels):
        tp = confusion[index, index].item()
        predicted_as = confusion[:, index].sum().item()
        actual = confusion[index, :].sum().item()
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    k = min(top_k, n_classes)
    top_hits = (probs.topk(k, dim=1).indices == targets[:, None]).any(1).float().mean().item() if len(probs) else 0.0
    accuracy = (predicted == targets).float().mean().item() if len(probs) else 0.0
    return {
        "accuracy": accuracy, f"top{k}_accuracy": top_hits, "images": len(targets), "per_class": per_class,
        "confusion_matrix": confusion.tolist(), "labels": labels,
    }


def evaluate_keys(bundle_dir: Path, store: ImageStore, items: list[tuple[str, int]], labels: list[str]) -> dict[str, Any]:
    keys = [key for key, _ in items]
    targets = torch.tensor([index for _, index in items], dtype=torch.long)
    probs = predict_keys(bundle_dir, store, keys)
    return classification_metrics(probs, targets, labels)
