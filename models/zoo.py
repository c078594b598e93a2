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


def weights_problem(weights: str, zoo_name: str | None) -> str | None:
    """What is wrong with `weights` for this network, found without downloading or reading anything big."""
    path = Path(weights).expanduser()
    if path.is_file():
        return None
    if any(sep in weights for sep in ("/", "\\")) or path.suffix in (".safetensors", ".pt", ".pth", ".bin"):
        return f"no such file {weights}"
    if zoo_name is None:
        return (f"{weights!r} is neither a local file nor usable without a torchvision model "
                "(set model.preset to one of the torchvision models)")
    names = [w.name for w in tv_models.get_model_weights(zoo_name)] + ["DEFAULT"]
    if weights not in names:
        return (f"{zoo_name} has no weights {weights!r}{did_you_mean(weights, names)}; "
                f"choices: {', '.join(names)}, or a local .safetensors/.pt file")
    return None


def _torchvision_weights(zoo_name: str, weights: str) -> dict[str, torch.Tensor]:
    entry = tv_models.get_model_weights(zoo_name)[weights]
    try:
        return entry.get_state_dict(progress=False, check_hash=True)
    except OSError as exc:  # URLError, a refused or cut connection, a full disk
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
        raise UserError(f"model.weights: could not fetch {zoo_name} {weights} from {entry.url} ({exc}); "
                        f"without internet, copy that file to {cache} or give a local file") from None


def read_weights(weights: str, zoo_name: str | None = None) -> dict[str, torch.Tensor]:
    """A local file (safetensors, or a torch.save'd state dict read with weights_only=True), or a
    torchvision weights name ("DEFAULT", "IMAGENET1K_V1") of the zoo model, downloaded once into torch's cache."""
    problem = weights_problem(weights, zoo_name)
    if problem:
        raise UserError(f"model.weights: {problem}")
    path = Path(weights).expanduser()
    if path.is_file():
        return _read_file(path)
    return _torchvision_weights(str(zoo_name), weights)


def fetch_weights(weights: str | None, zoo_name: str | None) -> bool:
    """Download torchvision weights into torch's cache now, so a missing network fails the run before any
    image is scraped. True when something was fetched (or already cached); local files are left to training."""
    if not weights or Path(weights).expanduser().is_file():
        return False
    read_weights(weights, zoo_name)
    return True


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
