"""Decoded-image cache: the deterministic preprocessing of every image, computed once per run.

Decoding and resizing a stored image costs far more than the small model of a typical command spends on
it, so epochs after the first read the decoded tensors from memory; random augmentations still run per
sample and per epoch on top. The decode pass itself runs on the DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

DECODE_BATCH = 64


def to_cacheable(value: Any) -> torch.Tensor:
    """Tensors stay tensors; a PIL image (augmentation still to run on it) becomes its uint8 array."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Image.Image):
        return torch.from_numpy(np.array(value, copy=True))
    raise TypeError(f"cannot cache a preprocessed value of type {type(value).__name__}")


class _Decode(Dataset):
    def __init__(self, decode: Callable[[int], Any]):
        self.decode = decode

    def __len__(self) -> int:
        return len(self.decode)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_cacheable(self.decode(index))


def _collate(values: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    # One stacked tensor per batch crosses the process boundary as one shared-memory block.
    if all(v.shape == values[0].shape and v.dtype == values[0].dtype for v in values):
        return torch.stack(values)
    return values


@dataclass
class DecodedCache:
    """index → the cached deterministic output, returned as the type the preprocessing produced."""

    values: torch.Tensor | list[torch.Tensor]
    as_pil: bool

    def __len__(self) -> int:
        return len(self.values)

    def __call__(self, index: int) -> Any:
        value = self.values[index]
        return Image.fromarray(value.numpy()) if self.as_pil else value

    @property
    def nbytes(self) -> int:
        if isinstance(self.values, torch.Tensor):
            return self.values.nbytes
        return sum(v.nbytes for v in self.values)


def estimate_bytes(decode: Callable[[int], Any], count: int) -> int:
    return to_cacheable(decode(0)).nbytes * count if count else 0


def build_cache(decode: Callable[[int], Any], count: int, workers: int, limit_bytes: int) -> DecodedCache | None:
    """Decode every item once (on `workers` processes); None when the cache would exceed limit_bytes."""
    if count == 0 or estimate_bytes(decode, count) > limit_bytes:
        return None
    as_pil = not isinstance(decode(0), torch.Tensor)
    loader = DataLoader(_Decode(decode), batch_size=DECODE_BATCH, num_workers=workers, collate_fn=_collate)
    batches = list(loader)
    if all(isinstance(b, torch.Tensor) for b in batches) and len({b.shape[1:] for b in batches}) == 1:
        return DecodedCache(torch.cat(batches), as_pil)
    # Mixed sizes (image ops without a resize): keep one tensor per image, copied out of shared memory.
    return DecodedCache([v.clone() for b in batches for v in b], as_pil)
