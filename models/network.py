"""Networks from a command: presets (layer lists) or a user's layer list with "auto" sizes.

Sizes marked "auto" are read off the real output shape of the previous layer, found by pushing a probe
tensor of the preprocessed input shape through the layers built so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.catalog import LAYERS
from models.errors import Problem, did_you_mean
from models.preprocess import resolve_value
from models.zoo import ZOO_LAYER, build_zoo_model, is_zoo_model, zoo_layer

# Parameters that take the channel/feature count of the incoming tensor.
CHANNEL_PARAMS = ("in_channels", "num_features", "num_channels", "num_parameters")
FEATURE_PARAMS = ("in_features", "in1_features", "normalized_shape", "embed_dim")


def tiny_cnn() -> list[dict[str, Any]]:
    """Fast on CPU: three conv blocks, a pooled 4x4 map and a small dense head (~0.2M parameters at 32 px).

    The head keeps where features are, which shape classes need; global pooling alone learned slowly.
    """
    layers: list[dict[str, Any]] = []
    for width in (32, 64, 64):
        layers += [
            {"name": "Conv2d", "in_channels": "auto", "out_channels": width, "kernel_size": 3, "padding": 1},
            {"name": "BatchNorm2d", "num_features": "auto"},
            {"name": "ReLU", "inplace": True},
            {"name": "MaxPool2d", "kernel_size": 2},
        ]
    layers += [
        {"name": "AdaptiveAvgPool2d", "output_size": 4},
        {"name": "Flatten"},
        {"name": "Linear", "in_features": "auto", "out_features": 128},
        {"name": "ReLU", "inplace": True},
        {"name": "Dropout", "p": 0.2},
        {"name": "Linear", "in_features": "auto", "out_features": "n_labels"},
    ]
    return layers


def lenet() -> list[dict[str, Any]]:
    """The older project's example network, sized automatically."""
    return [
        {"name": "Conv2d", "in_channels": "auto", "out_channels": 6, "kernel_size": 5},
        {"name": "ReLU"},
        {"name": "MaxPool2d", "kernel_size": 2, "stride": 2},
        {"name": "Conv2d", "in_channels": "auto", "out_channels": 16, "kernel_size": 5},
        {"name": "ReLU"},
        {"name": "MaxPool2d", "kernel_size": 2, "stride": 2},
        {"name": "Flatten"},
        {"name": "Linear", "in_features": "auto", "out_features": 120},
        {"name": "ReLU"},
        {"name": "Linear", "in_features": "auto", "out_features": 84},
        {"name": "ReLU"},
        {"name": "Linear", "in_features": "auto", "out_features": "n_labels"},
    ]


PRESETS = {"tiny_cnn": tiny_cnn, "lenet": lenet}


class NetworkError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass
class BuiltNetwork:
    module: nn.Sequential
    layers: list[dict[str, Any]]  # every "auto" and "n_labels" replaced by its number
    output_shape: tuple[int, ...]


def preset_layers(name: str, path: str = "model.preset") -> list[dict[str, Any]]:
    if is_zoo_model(name):
        return [zoo_layer(name, -1)]  # num_classes is filled from the labels at build time
    if name not in PRESETS:
        raise NetworkError([Problem(path, f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; "
                                          f"presets: {sorted(PRESETS)}")])
    return PRESETS[name]()


def _resolve_sizes(params: dict[str, Any], shape: torch.Size, n_labels: int, path: str) -> dict[str, Any]:
    resolved = {}
    for key, value in params.items():
        if value == "n_labels":
            value = n_labels
        elif value == "auto":
            if key in CHANNEL_PARAMS:
                if len(shape) < 2:
                    raise ValueError(f"{key}: 'auto' needs a channel dimension; input shape is {tuple(shape)}")
                value = int(shape[1])
            elif key in FEATURE_PARAMS:
                value = int(shape[-1])
            else:
                raise ValueError(f"{key}: 'auto' is only for sizes ({', '.join(CHANNEL_PARAMS + FEATURE_PARAMS)})")
        resolved[key] = resolve_value(value) if isinstance(value, str) else value
    return resolved


def _check_explicit_size(name: str, params: dict[str, Any], shape: torch.Size) -> str | None:
    for key in CHANNEL_PARAMS:
        if key in params and isinstance(params[key], int) and len(shape) >= 2 and params[key] != shape[1]:
            return f"{key} is {params[key]} but the previous layer gives {int(shape[1])} channels (shape {tuple(shape[1:])})"
    for key in ("in_features", "in1_features"):
        if key in params and isinstance(params[key], int) and params[key] != shape[-1]:
            return f"{key} is {params[key]} but the previous layer gives {int(shape[-1])} features (shape {tuple(shape[1:])}); use \"auto\""
    return None


def build_zoo(layer: dict[str, Any], input_shape: Sequence[int], n_labels: int) -> BuiltNetwork:
    module = build_zoo_model(layer["model"], n_labels)
    with torch.no_grad():
        output = module.eval()(torch.zeros((2, *input_shape)))
    return BuiltNetwork(nn.Sequential(module), [zoo_layer(layer["model"], n_labels)], tuple(output.shape[1:]))


def build_layers(
    layers: Sequence[dict[str, Any]], input_shape: Sequence[int], n_labels: int, path: str = "model.layers"
) -> BuiltNetwork:
    """Build layer by layer, probing shapes. Stops at the first layer that cannot be built."""
    if len(layers) == 1 and layers[0].get("name") == ZOO_LAYER:
        return build_zoo(layers[0], input_shape, n_labels)
    probe = torch.zeros((2, *input_shape))
    modules: list[nn.Module] = []
    resolved_layers: list[dict[str, Any]] = []
    for index, spec in enumerate(layers):
        where = f"{path}[{index}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise NetworkError([Problem(where, f'expected {{"name": LayerName, ...}}, found {spec!r}')])
        params = {k: v for k, v in spec.items() if k != "name"}
        try:
            entry = LAYERS.get(spec["name"])
        except ValueError as exc:
            raise NetworkError([Problem(f"{where}.name", str(exc))]) from None
        try:
            params = _resolve_sizes(params, probe.shape, n_labels, where)
        except ValueError as exc:
            raise NetworkError([Problem(f"{where}.{str(exc).split(':')[0]}", str(exc).split(': ', 1)[1])]) from None
        mismatch = _check_explicit_size(entry.name, params, probe.shape)
        if mismatch:
            raise NetworkError([Problem(f"{where}.{mismatch.split()[0]}", f"{entry.name}: {mismatch}")])
        try:
            entry.bind(params)
            module = entry.target(**params)
            with torch.no_grad():
                probe = module.eval()(probe)
        except Exception as exc:  # a layer that rejects its parameters or its input: name the layer
            raise NetworkError([Problem(where, f"{entry.name} failed on input shape {tuple(probe.shape[1:])}: {exc}")]) from None
        modules.append(module)
        resolved_layers.append({"name": entry.name, **params})
    return BuiltNetwork(nn.Sequential(*modules), resolved_layers, tuple(probe.shape[1:]))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
