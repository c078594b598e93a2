"""Checkpoints without pickle: tensors in a safetensors file, everything else as JSON in its header.

A nested state (model, optimizer, scheduler, scaler, RNG states, epoch, history) is split into a flat
{path: tensor} mapping and a JSON skeleton with {"__tensor__": path} placeholders. Dicts with non-string
keys (the optimizer's per-parameter state) keep their key types; tuples come back as lists, which every
torch optimizer and scheduler accepts. One file, written then renamed: a kill mid-write leaves the last
complete checkpoint in place.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

TENSOR = "__tensor__"
ITEMS = "__items__"


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {TENSOR: path}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _flatten(v, f"{path}.{k}", tensors) for k, v in value.items()}
        return {ITEMS: [[k, _flatten(v, f"{path}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _flatten(torch.from_numpy(value.copy()), path, tensors)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"checkpoint: cannot store {type(value).__name__} at {path}")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {TENSOR}:
            return tensors[value[TENSOR]]
        if set(value) == {ITEMS}:
            return {k: _unflatten(v, tensors) for k, v in value[ITEMS]}
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "s", tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # safetensors refuses tensors that share memory; clone the rare shared ones.
    save_file({k: v.clone() for k, v in tensors.items()}, str(tmp), metadata={"state": json.dumps(skeleton)})
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, device: str = "cpu") -> dict[str, Any]:
    """Reads tensors and JSON only: nothing in the file can run code."""
    with safe_open(str(path), framework="pt", device=device) as handle:
        skeleton = json.loads(handle.metadata()["state"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    return _unflatten(skeleton, tensors)


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "state": list(internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
