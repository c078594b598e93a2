"""torchvision models by name, with the classifier head sized to the labels; pretrained weights to start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torchvision import models as tv_models

from models.errors import UserError, did_you_mean

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


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain containers only
    except Exception as exc:  # weights_only refuses pickled objects: say so instead of a pickle traceback
        raise UserError(f"model.weights: {path} is not a plain state dict of tensors ({type(exc).__name__}); "
                        "save it with safetensors or torch.save(model.state_dict())") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.weights: {path} does not hold a state dict of tensors")
    return state


def _torchvision_weights(zoo_name: str | None, weights: str) -> dict[str, torch.Tensor]:
    if zoo_name is None:
        raise UserError(f"model.weights: {weights!r} is neither a local file nor usable without a torchvision "
                        "model (set model.preset to one of the torchvision models)")
    enum = tv_models.get_model_weights(zoo_name)
    names = [w.name for w in enum] + ["DEFAULT"]
    if weights not in names:
        raise UserError(f"model.weights: {zoo_name} has no weights {weights!r}{did_you_mean(weights, names)}; "
                        f"choices: {', '.join(names)}, or a local .safetensors/.pt file")
    return enum[weights].get_state_dict(progress=False, check_hash=True)


def read_weights(weights: str, zoo_name: str | None = None) -> dict[str, torch.Tensor]:
    """A local file (safetensors, or a torch.save'd state dict read with weights_only=True), or a
    torchvision weights name ("DEFAULT", "IMAGENET1K_V1") of the zoo model."""
    path = Path(weights).expanduser()
    if path.is_file():
        return _read_file(path)
    if any(sep in weights for sep in ("/", "\\")) or path.suffix in (".safetensors", ".pt", ".pth", ".bin"):
        raise UserError(f"model.weights: no such file {weights}")
    return _torchvision_weights(zoo_name, weights)


def _align_keys(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # A zoo model sits inside nn.Sequential (keys "0.…"); torchvision files have bare keys, bundles prefixed.
    if not set(state) & set(target):
        if all(k.startswith("0.") for k in target):
            state = {f"0.{k}": v for k, v in state.items()}
        elif all(k.startswith("0.") for k in state):
            state = {k[2:]: v for k, v in state.items()}
    return state


def load_weights(module: nn.Module, weights: str, zoo_name: str | None = None) -> dict[str, Any]:
    """Load what fits; the classifier head is skipped when its label count differs (fine-tuning).

    Returns which keys were loaded, skipped (shape differs) and missing, for the training record.
    """
    target = module.state_dict()
    state = _align_keys(read_weights(weights, zoo_name), target)
    fitting = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    skipped = sorted(k for k in state if k in target and k not in fitting)
    if not fitting:
        raise UserError(f"model.weights: none of the {len(state)} tensors in {weights} fit this network")
    module.load_state_dict(fitting, strict=False)
    missing = sorted(k for k in target if k not in fitting)
    return {"weights": weights, "loaded": len(fitting), "skipped": skipped, "missing": missing}
