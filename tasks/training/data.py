"""Datasets over store keys: the manifest, a per-process store decoder, samples with per-epoch augmentation."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from models.preprocess import Preprocess
from store import ImageStore, open_store
from store.base import SPLITS


@dataclass
class Manifest:
    """Which keys are in which split, per label index: the dataset a model was trained on."""

    labels: list[str]
    items: dict[str, list[tuple[str, int]]]  # split -> [(key, label index)]

    def counts(self) -> dict[str, dict[str, int]]:
        table = {label: dict.fromkeys(SPLITS, 0) for label in self.labels}
        for split, pairs in self.items.items():
            for _, index in pairs:
                table[self.labels[index]][split] += 1
        return table

    def digest(self) -> str:
        canonical = json.dumps({s: sorted(p) for s, p in self.items.items()}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def build_manifest(store: ImageStore, labels: list[str]) -> Manifest:
    items: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    for index, label in enumerate(labels):
        for split in SPLITS:
            items[split].extend((key, index) for key in store.keys(label, split))
    for pairs in items.values():
        pairs.sort()
    return Manifest(labels, items)


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)  # animated GIF/WebP: the first frame
        return image.convert("RGB")


class StoreDecoder:
    """index → the deterministic part of the preprocessing (image ops + fixed transforms) of one stored image.

    Picklable: each DataLoader worker process opens its own store connection on first use.
    """

    def __init__(self, store_url: str, keys: list[str], preprocess: Preprocess):
        self.store_url = store_url
        self.keys = keys
        self.preprocess = preprocess
        self._store: ImageStore | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.keys)

    def _open(self) -> ImageStore:
        if self._store is None or self._pid != os.getpid():
            self._store = open_store(self.store_url)
            self._pid = os.getpid()
        return self._store

    def load_image(self, index: int) -> Image.Image:
        key = self.keys[index]
        return decode_image(self._open().get_many([key])[key])

    def __call__(self, index: int) -> Any:
        return self.preprocess.deterministic(self.load_image(index))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_store"] = None
        return state


def sample_seed(seed: int, epoch: int, index: int) -> int:
    # A pure function of (seed, epoch, index): augmentation does not depend on worker count, worker
    # scheduling or where a resumed run restarted.
    return (seed * 1_000_003 + epoch * 7_919 + index) % 2**63


class SampleDataset(Dataset):
    """(epoch, index) → (augmented tensor, label index). `fetch` decodes or reads the cache."""

    def __init__(self, fetch: Callable[[int], Any], targets: list[int], augment: Callable[[Any], Any] | None,
                 seed: int):
        self.fetch = fetch
        self.targets = targets
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, ref: tuple[int, int] | int) -> tuple[torch.Tensor, int]:
        epoch, index = ref if isinstance(ref, tuple) else (0, ref)
        value = self.fetch(index)
        if self.augment is not None:
            seed = sample_seed(self.seed, epoch, index)
            # The CPU generator only: torch.manual_seed also queues every accelerator's and costs ~100x more.
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            value = self.augment(value)
        if not isinstance(value, torch.Tensor):
            raise TypeError("the transforms must end in a tensor (add ToTensor)")
        return value, self.targets[index]


class EpochSampler(Sampler):
    """Yields (epoch, index). One permutation per epoch, or `draws` random picks (seed mode), optionally
    class-balanced (each label drawn equally often, with replacement). Call set_epoch before each pass."""

    def __init__(self, targets: list[int], seed: int, balanced: bool = False):
        self.targets = targets
        self.seed = seed
        self.balanced = balanced
        self.epoch = 0
        self.draws: int | None = None

    def set_epoch(self, epoch: int, draws: int | None = None) -> None:
        self.epoch, self.draws = epoch, draws

    def __len__(self) -> int:
        return self.draws if self.draws is not None else len(self.targets)

    def _weights(self) -> torch.Tensor:
        counts = np.bincount(self.targets)
        return torch.tensor([1.0 / counts[t] for t in self.targets], dtype=torch.double)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 0) % 2**62 + 1)
        n = len(self.targets)
        if self.balanced:
            picks = torch.multinomial(self._weights(), len(self), replacement=True, generator=generator)
        elif self.draws is None:
            picks = torch.randperm(n, generator=generator)
        else:
            picks = torch.randint(n, (self.draws,), generator=generator)
        for index in picks.tolist():
            yield self.epoch, index


def default_workers(requested: int) -> int:
    if requested >= 0:
        return requested
    return min(4, max(0, (os.cpu_count() or 1) // 2))


class TrainBatches(Sampler):
    """Batches of `batch_size` indices from `sampler`; a last batch of one sample joins the batch before it.

    Batch norm cannot train on one sample ("Expected more than 1 value per channel"), so a split of
    k * batch_size + 1 images would otherwise crash every epoch's last step, and one sample is a noisy step.
    Every DDP rank sees the same padded length, so all ranks still make the same number of steps.
    """

    def __init__(self, sampler: Sampler, batch_size: int):
        self.sampler = sampler
        self.batch_size = batch_size

    def __len__(self) -> int:
        full, tail = divmod(len(self.sampler), self.batch_size)  # type: ignore[arg-type]
        return full + (1 if tail > 1 or (tail == 1 and full == 0) else 0)

    def __iter__(self) -> Iterator[list[Any]]:
        ready: list[Any] | None = None
        batch: list[Any] = []
        for item in self.sampler:
            batch.append(item)
            if len(batch) == self.batch_size:
                if ready is not None:
                    yield ready
                ready, batch = batch, []
        if ready is not None and len(batch) == 1:
            ready, batch = ready + batch, []
        if ready is not None:
            yield ready
        if batch:
            yield batch


def make_loader(dataset: Dataset, batch_size: int, workers: int, pin: bool, sampler: Sampler | None = None,
                persistent: bool = True) -> DataLoader:
    """Workers stay alive across epochs (persistent); pinned memory only helps copies to CUDA. With a sampler
    (training) batches come from TrainBatches; without one (validation) in order, every sample once."""
    batching: dict[str, Any] = ({"batch_sampler": TrainBatches(sampler, batch_size)} if sampler is not None
                                else {"batch_size": batch_size, "shuffle": False, "drop_last": False})
    return DataLoader(
        dataset, num_workers=workers, persistent_workers=persistent and workers > 0, pin_memory=pin, **batching,
    )
