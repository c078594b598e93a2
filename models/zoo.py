"""torchvision models by name, with the classifier head sized to the labels."""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision import models as tv_models

from models.errors import did_you_mean

ZOO_NAMES = (
    "resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2",
    "efficientnet_b0", "efficientnet_b1", "convnext_tiny", "regnet_y_400mf", "shufflenet_v2_x1_0",
    "squeezenet1_1", "densenet121",
)
ZOO_LAYER = "torchvision"  # the one "layer" a bundle records for a zoo model


def is_zoo_model(name: str | None) -> bool:
    return name in ZOO_NAMES


def zoo_layer(name: str, n_labels: int) -> dict[str, Any]:
    return {"name": ZOO_LAYER, "model": name, "num_classes": n_labels}


def build_zoo_model(name: str, n_labels: int) -> nn.Module:
    """Randomly initialised; pretrained weights are loaded by the trainer (never at build time)."""
    if name not in ZOO_NAMES:
        raise ValueError(f"unknown torchvision model {name!r}{did_you_mean(name, ZOO_NAMES)}")
    return tv_models.get_model(name, weights=None, num_classes=n_labels)
