"""The demo's command: four synthetic shape classes, the tiny CNN preset, a few epochs on CPU."""

from __future__ import annotations

from typing import Any


def demo_command() -> dict[str, Any]:
    return {
        "model_name": "shapes-demo",
        "labels": ["circle", "square", "triangle", "star"],
        "optimizer": {"name": "Adam", "lr": 0.002},
        "scheduler": {"name": "CosineAnnealingLR", "T_max": 20},
        "batch_size": 32,
        "epochs": 20,
        "image_ops": [{"resize": {"size": [32, 32]}}, {"convert": {"mode": "RGB"}}],
        "transform": {
            "ToTensor": True,
            "Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
            "RandomHorizontalFlip": True,
            "RandomVerticalFlip": True,
        },
        "acquire": {"source": "synthetic", "per_label": 300, "image_size": 64, "seed": 0},
    }
