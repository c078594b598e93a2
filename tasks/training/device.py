"""Where and how the math runs: device choice, mixed precision, memory layout, out-of-memory advice."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from models.errors import UserError


class TrainingFailed(UserError):
    """Training stopped for a reason the user can act on (NaN loss, no data, out of memory)."""


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: full fp32) and whether the loss is scaled (fp16 only: bf16 needs no scaling)."""

    dtype: torch.dtype | None
    scale_loss: bool
    channels_last: bool

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")  # type: ignore[arg-type]


def pick_precision(device: torch.device, amp: str = "auto") -> Precision:
    """Mixed precision and channels_last on CUDA only: on CPU and MPS they cost more than they give here."""
    if device.type != "cuda" or amp == "off":
        return Precision(None, False, False)
    if amp == "fp16":
        return Precision(torch.float16, True, True)
    if amp in ("auto", "bf16"):
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, False, True)
        return Precision(torch.float16, True, True)
    raise ValueError(f"amp: expected auto, bf16, fp16 or off, found {amp!r}")


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def make_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    # A disabled scaler is a no-op with the same API, so the step code has one path.
    return torch.amp.GradScaler(device.type, enabled=precision.scale_loss)


def prepare_model(model: nn.Module, device: torch.device, precision: Precision) -> nn.Module:
    model = model.to(device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_device(images: torch.Tensor, device: torch.device, precision: Precision) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if precision.channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def oom_message(batch_size: int, device: torch.device) -> str:
    smaller = max(1, batch_size // 2)
    return (f"out of memory on {device} with batch_size {batch_size}; try batch_size {smaller} "
            f"(or smaller images via image_ops, or a smaller model)")


@contextlib.contextmanager
def explain_oom(batch_size: int, device: torch.device) -> Iterator[None]:
    """Turn an out-of-memory error into a TrainingFailed that names the batch size and a smaller one."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise TrainingFailed(oom_message(batch_size, device)) from exc


@contextlib.contextmanager
def cpu_threads(device: torch.device, loader_workers: int) -> Iterator[None]:
    """On CPU the math and the loader workers share the cores: the math gets what the workers leave.

    torch's default (one thread per core) makes its threads wait on the workers' cores; on a busy small
    machine that costs several times the step time. OMP_NUM_THREADS, or a lower torch.set_num_threads, wins.
    """
    if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        yield
        return
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # torchrun: processes on this machine
    share = cores // max(1, ranks_here) - loader_workers
    torch.set_num_threads(max(1, min(before, share)))  # a caller's lower setting stays
    try:
        yield
    finally:
        torch.set_num_threads(before)
