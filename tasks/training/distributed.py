"""DDP building blocks: who this process is (from torchrun's environment), the process group, the wrapped
model, the rank's shard of the samples, reduced metrics.

Everything is a no-op in a single process (WORLD_SIZE unset or 1), so the trainer calls these
unconditionally and stays one code path. Backend NCCL on CUDA, gloo elsewhere (CPU tests, CPU clusters).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Sampler

# A rank waiting on another one that is decoding the cache or writing a checkpoint is normal; a rank waiting
# this long is not. Shorter than NCCL's default (10 min) would kill slow-but-healthy first epochs.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, the bundle, metrics and the result file."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def context_from_env(environ: Mapping[str, str] | None = None) -> DistContext:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them; absent means one process."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistContext()
    return DistContext(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")))


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def _resolve(device: torch.device | str) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def init_distributed(device: torch.device | str = "cpu") -> DistContext:
    """Join the process group torchrun prepared (env:// rendezvous). Idempotent: the entry point and the
    trainer may both call it."""
    ctx = context_from_env()
    if not ctx.distributed or dist.is_initialized():
        return ctx
    resolved = _resolve(device)
    if resolved.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)  # before NCCL init: one GPU per process
    dist.init_process_group(backend=backend_for(resolved), timeout=PROCESS_GROUP_TIMEOUT)
    return ctx


def rank_device(device: torch.device | str, ctx: DistContext) -> torch.device:
    """A bare "cuda" would put every rank of a node on GPU 0; each rank takes the GPU of its local rank."""
    resolved = _resolve(device)
    if ctx.distributed and resolved.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return resolved


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around a model already on its device; the model itself when not distributed.
    DDP broadcasts rank 0's weights at construction, so ranks start identical even after a resume."""
    if not ctx.distributed:
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(model)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module: its state_dict has no "module." prefix, so checkpoints and bundles stay loadable by a
    single process."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def shard_sampler(dataset: Dataset, ctx: DistContext, shuffle: bool = True, seed: int = 0) -> Sampler | None:
    """torch's DistributedSampler for a plain map-style dataset (the caller calls set_epoch); None when not
    distributed, so DataLoader falls back to its own sampling."""
    if not ctx.distributed:
        return None
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed,
                              drop_last=False)


class ShardedSampler(Sampler):
    """DistributedSampler's split applied to another sampler's output: every rank draws the same sequence
    from `inner` (same seed, same epoch) and keeps every world_size-th item from its rank on.

    Used over the trainer's EpochSampler so that per-epoch augmentation seeds, seed-mode draws and balanced
    sampling behave as in one process. Padded like DistributedSampler (wrapping to the start) so every rank
    makes the same number of steps: an uneven count would leave one rank waiting in an all-reduce forever.
    Call set_epoch on `inner`; this reads it afresh on every pass.
    """

    def __init__(self, inner: Sampler, ctx: DistContext):
        self.inner = inner
        self.ctx = ctx

    def __len__(self) -> int:
        return math.ceil(len(self.inner) / self.ctx.world_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        items = list(self.inner)
        if not items:
            return iter([])
        total = len(self) * self.ctx.world_size
        padded = (items * math.ceil(total / len(items)))[:total]
        return iter(padded[self.ctx.rank:total:self.ctx.world_size])


def reduce_sum(value: torch.Tensor | float, ctx: DistContext) -> torch.Tensor | float:
    """The sum over ranks (every rank gets it); a float in gives a float out."""
    if not ctx.distributed:
        return value
    is_float = not isinstance(value, torch.Tensor)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(float(value), dtype=torch.float64, device=device) if is_float else value.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.item() if is_float else tensor


def reduce_stats(stats: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Per-rank {"loss", "accuracy", "images"} (means over the rank's images) → the same over all ranks."""
    if not ctx.distributed:
        return stats
    images = float(stats["images"])
    packed = torch.tensor([stats["loss"] * images, stats["accuracy"] * images, images], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        packed = packed.cuda()
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)  # one collective for the three numbers
    loss_sum, correct, seen = packed.tolist()
    return {**stats, "loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1), "images": int(seen)}


def barrier(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (torch warns at exit when it is left open)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
