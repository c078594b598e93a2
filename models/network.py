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
from models.preprocess import check_value, resolve_value
from models.zoo import ZOO_LAYER, ZOO_NAMES, build_zoo_model, is_zoo_model, zoo_layer

# Parameters that take the channel/feature count of the incoming tensor.
CHANNEL_PARAMS = ("in_channels", "num_features", "num_channels", "num_parameters")
FEATURE_PARAMS = ("in_features", "normalized_shape")


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


# Beyond these a dry run (and most training machines) would run out of memory: refuse before allocating.
MAX_PARAMETERS = 300_000_000
MAX_PROBE_ACTIVATIONS = 256_000_000  # elements in all layer outputs for a batch of two


@dataclass
class BuiltNetwork:
    module: nn.Sequential
    layers: list[dict[str, Any]]  # every "auto" and "n_labels" replaced by its number
    output_shape: tuple[int, ...]
    parameters: int = 0
    activations: int = 0  # elements in all layer outputs for a batch of two (the dry run's memory estimate)


def preset_layers(name: str, path: str = "model.preset") -> list[dict[str, Any]]:
    if is_zoo_model(name):
        return [zoo_layer(name, -1)]  # num_classes is filled from the labels at build time
    if name not in PRESETS:
        raise NetworkError([Problem(path, f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; "
                                          f"presets: {sorted(PRESETS)}, torchvision models: {list(ZOO_NAMES)}")])
    return PRESETS[name]()


def check_layer_specs(layers: Sequence[Any], path: str = "model.layers") -> list[Problem]:
    """Every layer's name and parameters, checked without building anything, so all are reported at once."""
    problems: list[Problem] = []
    for index, spec in enumerate(layers):
        where = f"{path}[{index}]"
        if not isinstance(spec, dict) or "name" not in spec:
            problems.append(Problem(where, f'expected {{"name": LayerName, ...parameters}}, found {spec!r}'[:300]))
            continue
        unknown = LAYERS.unknown(spec["name"], f"{where}.name")
        if unknown:
            problems.append(unknown)
            continue
        params = {k: v for k, v in spec.items() if k != "name"}
        for key, value in params.items():
            if value == "auto" and key not in CHANNEL_PARAMS + FEATURE_PARAMS:
                problems.append(Problem(f"{where}.{key}", f'"auto" is only for sizes '
                                                          f"({', '.join(CHANNEL_PARAMS + FEATURE_PARAMS)})"))
            elif value not in ("auto", "n_labels"):
                problems += check_value(value, f"{where}.{key}")
        placeholders = {k: 1 if v in ("auto", "n_labels") else v for k, v in params.items()}
        problems += LAYERS.get(spec["name"]).check(placeholders, where)
    return problems


def _resolve_sizes(params: dict[str, Any], shape: torch.Size, n_labels: int, where: str) -> dict[str, Any]:
    resolved = {}
    for key, value in params.items():
        if value == "n_labels":
            value = n_labels
        elif value == "auto":
            if key in CHANNEL_PARAMS and len(shape) < 2:
                raise NetworkError([Problem(f"{where}.{key}", f"'auto' needs a channel dimension; "
                                                              f"the input here has shape {tuple(shape[1:])}")])
            value = int(shape[1]) if key in CHANNEL_PARAMS else int(shape[-1])
        resolved[key] = value  # still JSON: the resolved layers go into the bundle's model.json
    return resolved


def _construct(name: str, params: dict[str, Any]) -> nn.Module:
    return LAYERS.get(name).target(**{k: resolve_value(v) for k, v in params.items()})


def _check_explicit_size(name: str, params: dict[str, Any], shape: torch.Size, where: str) -> Problem | None:
    got = tuple(shape[1:])
    for key in CHANNEL_PARAMS:
        if key in params and isinstance(params[key], int) and len(shape) >= 2 and params[key] != shape[1]:
            return Problem(f"{where}.{key}", f"{name}: {key} is {params[key]} but the previous layer gives "
                                             f"{int(shape[1])} channels (shape {got}); use \"auto\"")
    for key in ("in_features", "in1_features"):
        if key in params and isinstance(params[key], int) and params[key] != shape[-1]:
            return Problem(f"{where}.{key}", f"{name}: {key} is {params[key]} but the previous layer gives "
                                             f"{int(shape[-1])} features (shape {got}); use \"auto\"")
    return None


def _forward_shape(module: nn.Module, shape: tuple[int, ...], device: str) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(module.eval()(torch.zeros(shape, device=device)).shape)


def _leaf_outputs(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Elements in all leaf-module outputs for one forward pass on the meta device (the activations kept)."""
    total = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        total += output.numel() if isinstance(output, torch.Tensor) else 0

    handles = [m.register_forward_hook(count) for m in module.modules() if not list(m.children())]
    try:
        _forward_shape(module, shape, "meta")
    finally:
        for handle in handles:
            handle.remove()
    return total


def build_zoo(layer: dict[str, Any], input_shape: Sequence[int], n_labels: int) -> BuiltNetwork:
    with torch.device("meta"):  # sizes first, without allocating weights
        meta = build_zoo_model(layer["model"], n_labels)
    probed = BuiltNetwork(nn.Sequential(), [], (), count_parameters(meta), _leaf_outputs(meta, (2, *input_shape)))
    _check_limits(probed, "model.preset")
    module = build_zoo_model(layer["model"], n_labels)
    output = _forward_shape(module, (2, *input_shape), "cpu")
    return BuiltNetwork(nn.Sequential(module), [zoo_layer(layer["model"], n_labels)], output[1:],
                        probed.parameters, probed.activations)


def _probe(layers: Sequence[dict[str, Any]], input_shape: Sequence[int], n_labels: int, path: str) -> BuiltNetwork:
    """Resolve sizes and shapes on the meta device: no memory is allocated, however large the layers."""
    shape = torch.Size((2, *input_shape))
    resolved_layers: list[dict[str, Any]] = []
    n_params, activations = 0, 0
    for index, spec in enumerate(layers):
        where = f"{path}[{index}]"
        entry = LAYERS.get(spec["name"])
        params = _resolve_sizes({k: v for k, v in spec.items() if k != "name"}, shape, n_labels, where)
        mismatch = _check_explicit_size(entry.name, params, shape, where)
        if mismatch:
            raise NetworkError([mismatch])
        try:
            with torch.device("meta"):
                module = _construct(entry.name, params)
                shape = torch.Size(_forward_shape(module, tuple(shape), "meta"))
        except Exception as exc:  # a layer that rejects its parameters or its input: name the layer
            failure = f"{entry.name} failed on input shape {tuple(shape[1:])}: {exc}"[:400]
            raise NetworkError([Problem(where, failure)]) from None
        n_params += count_parameters(module)
        activations += shape.numel()
        resolved_layers.append({"name": entry.name, **params})
    return BuiltNetwork(nn.Sequential(), resolved_layers, tuple(shape[1:]), n_params, activations)


def _check_limits(probed: BuiltNetwork, path: str) -> None:
    if probed.parameters > MAX_PARAMETERS:
        raise NetworkError([Problem(path, f"the network has {probed.parameters:,} parameters; "
                                          f"expected at most {MAX_PARAMETERS:,} (smaller layers or images)")])
    if probed.activations > MAX_PROBE_ACTIVATIONS:
        raise NetworkError([Problem(path, f"the layer outputs for a batch of two hold {probed.activations:,} "
                                          f"values; expected at most {MAX_PROBE_ACTIVATIONS:,} (smaller images?)")])


def build_layers(
    layers: Sequence[dict[str, Any]], input_shape: Sequence[int], n_labels: int, path: str = "model.layers"
) -> BuiltNetwork:
    """Check every layer, probe shapes on the meta device, then build the real network."""
    if len(layers) == 1 and isinstance(layers[0], dict) and layers[0].get("name") == ZOO_LAYER:
        return build_zoo(layers[0], input_shape, n_labels)
    problems = check_layer_specs(layers, path)
    if problems:
        raise NetworkError(problems)
    probed = _probe(layers, input_shape, n_labels, path)
    _check_limits(probed, path)
    modules = []
    for index, spec in enumerate(probed.layers):
        try:
            modules.append(_construct(spec["name"], {k: v for k, v in spec.items() if k != "name"}))
        except Exception as exc:  # allocation failures and the like, after the meta probe passed
            raise NetworkError([Problem(f"{path}[{index}]", f"{spec['name']}: {exc}"[:400])]) from None
    module = nn.Sequential(*modules)
    if any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in modules):
        _forward_shape(module, (2, *input_shape), "cpu")  # lazy layers take their sizes on the first call
    return BuiltNetwork(module, probed.layers, probed.output_shape, count_parameters(module), probed.activations)


def count_parameters(module: nn.Module) -> int:
    # Lazy parameters have no size until the first forward pass.
    return sum(p.numel() for p in module.parameters() if not isinstance(p, nn.parameter.UninitializedParameter))
