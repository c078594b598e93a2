"""The training data path: decode once into the cache (when it fits), then per-epoch augmentation on workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from models.command import Command
from models.preprocess import Preprocess, build_preprocess
from tasks.training.cache import DecodedCache, build_cache
from tasks.training.data import EpochSampler, Manifest, SampleDataset, StoreDecoder, default_workers, make_loader
from tasks.training.distributed import DistContext, ShardedSampler


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader | None
    sampler: EpochSampler
    input_shape: tuple[int, ...]
    cache_report: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        # Persistent workers otherwise live until the loaders are garbage collected.
        for loader in (self.train, self.val):
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()


def _fetcher(decoder: StoreDecoder, workers: int, limit: int) -> tuple[Any, DecodedCache | None]:
    cache = build_cache(decoder, len(decoder), workers, limit) if limit > 0 else None
    return (cache if cache is not None else decoder), cache


def input_shape_of(decoder: StoreDecoder, preprocess: Preprocess) -> tuple[int, ...]:
    return tuple(preprocess.without_augmentation()(decoder.load_image(0)).shape)


def loader_workers(requested: int, cached: bool, augmenting: bool) -> int:
    """Cached tensors without augmentation need no per-sample work: worker processes would only add copying."""
    workers = default_workers(requested)
    return 0 if cached and not augmenting else workers


def build_loaders(command: Command, store_url: str, manifest: Manifest, workers: int, device: torch.device,
                  balanced: bool, cache_limit: int, ctx: DistContext | None = None) -> Loaders:
    """Every rank of a distributed run decodes the whole split (the shards change every epoch) and draws the
    same epoch sequence, keeping its own share of it; validation is not sharded, so all ranks agree on it."""
    preprocess = build_preprocess(command.image_ops, command.transform)
    train_items, val_items = manifest.items["train"], manifest.items["val"]
    train_decoder = StoreDecoder(store_url, [k for k, _ in train_items], preprocess)
    val_decoder = StoreDecoder(store_url, [k for k, _ in val_items], preprocess)
    shape = input_shape_of(train_decoder, preprocess)
    decode_workers = default_workers(workers)
    train_fetch, train_cache = _fetcher(train_decoder, decode_workers, cache_limit)
    val_limit = cache_limit - (train_cache.nbytes if train_cache else cache_limit)
    val_fetch, val_cache = _fetcher(val_decoder, decode_workers, val_limit) if val_items else (val_decoder, None)
    augment = preprocess.augmentation if preprocess.augment else None
    train_targets = [t for _, t in train_items]
    sampler = EpochSampler(train_targets, command.seed, balanced)
    pin = device.type == "cuda"
    train_workers = loader_workers(workers, train_cache is not None, augment is not None)
    ctx = ctx or DistContext()
    train_loader = make_loader(SampleDataset(train_fetch, train_targets, augment, command.seed), command.batch_size,
                               train_workers, pin, ShardedSampler(sampler, ctx) if ctx.distributed else sampler)
    val_loader = None
    if val_items:
        # Validation never augments: without augmentation a cached split needs no workers either.
        val_set = SampleDataset(val_fetch, [t for _, t in val_items], None, command.seed)
        val_loader = make_loader(val_set, command.batch_size, loader_workers(workers, val_cache is not None, False),
                                 pin)
    report = {
        "train_cached": train_cache is not None, "val_cached": val_cache is not None,
        "cache_mb": round(sum(c.nbytes for c in (train_cache, val_cache) if c) / 2**20, 2),
        "workers": train_workers,
    }
    return Loaders(train_loader, val_loader, sampler, shape, report)
