"""Datasets over store keys: bytes from the store, the command's preprocessing, label indices."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

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


class StoreImageDataset(Dataset):
    """Map-style; opens its own store connection in each worker process."""

    def __init__(self, store_url: str, items: list[tuple[str, int]], preprocess: Preprocess):
        self.store_url = store_url
        self.items = items
        self.preprocess = preprocess
        self._store: ImageStore | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.items)

    def _open(self) -> ImageStore:
        if self._store is None or self._pid != os.getpid():
            self._store = open_store(self.store_url)
            self._pid = os.getpid()
        return self._store

    def load_image(self, index: int) -> Image.Image:
        key = self.items[index][0]
        data = self._open().get_many([key])[key]
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            return image.convert("RGB")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.preprocess(self.load_image(index)), self.items[index][1]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_store"] = None
        return state


def default_workers(requested: int) -> int:
    if requested >= 0:
        return requested
    return min(4, max(0, (os.cpu_count() or 1) // 2))


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int, seed: int, pin: bool) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=generator,
        persistent_workers=workers > 0, pin_memory=pin, drop_last=False,
    )
