"""The model bundle: model.safetensors + model.json. Enough to rebuild and run; nothing unpickled."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.network import build_layers
from models.preprocess import Preprocess, build_preprocess

BUNDLE_FORMAT = 1


@dataclass
class BundleSpec:
    model_name: str
    attempt_id: str
    labels: list[str]
    layers: list[dict[str, Any]]  # fully resolved: no "auto"
    input_shape: list[int]
    image_ops: list[dict[str, Any]]
    transform: dict[str, Any]
    manifest_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    format: int = BUNDLE_FORMAT

    def preprocess(self) -> Preprocess:
        return build_preprocess(self.image_ops, self.transform).without_augmentation()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, default=str)
    os.replace(tmp, path)


def save_bundle(directory: Path, module: nn.Module, spec: BundleSpec) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = directory / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, directory / "model.safetensors")
    write_json_atomic(directory / "model.json", asdict(spec))
    return directory


def read_spec(directory: Path) -> BundleSpec:
    data = json.loads((Path(directory) / "model.json").read_text())
    return BundleSpec(**data)


def load_bundle(directory: Path, device: str = "cpu") -> tuple[nn.Module, BundleSpec]:
    spec = read_spec(directory)
    built = build_layers(spec.layers, spec.input_shape, len(spec.labels))
    state = load_file(str(Path(directory) / "model.safetensors"), device=device)
    built.module.load_state_dict(state)
    return built.module.to(device).eval(), spec


def predict_tensor(module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(module(batch), dim=1)
