"""Evaluation of a bundle on store images: accuracy, per-class precision/recall/F1, confusion matrix, top-k,
and the most confidently wrong images."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from models.bundle import BundleSpec, load_bundle
from models.preprocess import Preprocess
from store import ImageStore
from tasks.training.data import decode_image

BATCH = 64


def _batches(keys: list[str], size: int) -> list[list[str]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


def predict_images(module: nn.Module, preprocess: Preprocess, images: Iterable[Image.Image]) -> torch.Tensor:
    """Class probabilities of a batch of PIL images (the bundle's deterministic preprocessing)."""
    device = next(module.parameters()).device
    batch = torch.stack([preprocess(image) for image in images]).to(device)
    with torch.no_grad():
        return torch.softmax(module(batch).float(), dim=1).cpu()


def predict_with(module: nn.Module, spec: BundleSpec, store: ImageStore, keys: list[str]) -> torch.Tensor:
    preprocess = spec.preprocess()
    outputs = []
    for chunk in _batches(keys, BATCH):
        blobs = store.get_many(chunk)
        missing = [key for key in chunk if key not in blobs]
        if missing:
            raise KeyError(f"images not in the store: {missing[:5]}")
        outputs.append(predict_images(module, preprocess, (decode_image(blobs[key]) for key in chunk)))
    return torch.cat(outputs) if outputs else torch.zeros((0, len(spec.labels)))


def predict_keys(bundle_dir: Path, store: ImageStore, keys: list[str], device: str = "cpu") -> torch.Tensor:
    """Class probabilities for each key, in order."""
    module, spec = load_bundle(bundle_dir, device)
    return predict_with(module, spec, store, keys)


def _per_class(confusion: torch.Tensor, labels: list[str]) -> dict[str, dict[str, float]]:
    per_class = {}
    for index, label in enumerate(labels):
        tp = confusion[index, index].item()
        predicted_as = confusion[:, index].sum().item()
        actual = confusion[index, :].sum().item()
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return per_class


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, labels: list[str],
                           top_k: int = 3) -> dict[str, Any]:
    n_classes = len(labels)
    predicted = probs.argmax(1) if len(probs) else torch.zeros(0, dtype=torch.long)
    confusion = torch.zeros((n_classes, n_classes), dtype=torch.long)
    for truth, guess in zip(targets.tolist(), predicted.tolist(), strict=True):
        confusion[truth, guess] += 1
    per_class = _per_class(confusion, labels)
    k = min(top_k, n_classes)
    top_hits = (probs.topk(k, dim=1).indices == targets[:, None]).any(1).float().mean().item() if len(probs) else 0.0
    accuracy = (predicted == targets).float().mean().item() if len(probs) else 0.0
    macro_f1 = sum(m["f1"] for m in per_class.values()) / max(n_classes, 1)
    return {
        "accuracy": accuracy, f"top{k}_accuracy": top_hits, "top_k": k, "macro_f1": macro_f1,
        "images": len(targets), "per_class": per_class, "confusion_matrix": confusion.tolist(), "labels": labels,
    }


def top_losses(probs: torch.Tensor, targets: torch.Tensor, keys: list[str], labels: list[str],
               n: int = 16) -> list[dict[str, Any]]:
    """The wrong predictions made with the most confidence: often mislabeled or off-topic scraped images."""
    if not len(probs):
        return []
    predicted = probs.argmax(1)
    wrong = (predicted != targets).nonzero().flatten().tolist()
    losses = {i: -torch.log(probs[i, targets[i]].clamp_min(1e-12)).item() for i in wrong}
    ranked = sorted(wrong, key=lambda i: losses[i], reverse=True)[:n]
    return [{"key": keys[i], "label": labels[targets[i]], "predicted": labels[predicted[i]],
             "confidence": probs[i, predicted[i]].item(), "loss": losses[i]} for i in ranked]


def evaluate_items(module: nn.Module, spec: BundleSpec, store: ImageStore, items: list[tuple[str, int]],
                   top_k: int = 3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, top losses) of the module on (key, label index) items."""
    keys = [key for key, _ in items]
    targets = torch.tensor([index for _, index in items], dtype=torch.long)
    probs = predict_with(module, spec, store, keys)
    return classification_metrics(probs, targets, spec.labels, top_k), top_losses(probs, targets, keys, spec.labels)


def evaluate_keys(bundle_dir: Path, store: ImageStore, items: list[tuple[str, int]],
                  labels: list[str]) -> dict[str, Any]:
    module, spec = load_bundle(bundle_dir)
    spec.labels = labels
    return evaluate_items(module, spec, store, items)[0]
