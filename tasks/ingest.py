"""Ingestion: verified bytes → the store, deduplicated exactly (SHA-256) and nearly (perceptual hash).

Every image, downloaded or read from a folder, goes through `Ingestor.ingest`, so one code path decides
what is stored, what is a duplicate and what is rejected, and counts it in an IngestReport.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from models.images import ImageRejected, inspect_image
from store import ImageStore, open_store

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
DEFAULT_NEAR_THRESHOLD = 4  # of 64 dHash bits


@dataclass
class LabelReport:
    seen: int = 0
    downloaded: int = 0
    stored: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    ambiguous: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "downloaded": self.downloaded, "stored": self.stored,
                "duplicates": self.duplicates, "near_duplicates": self.near_duplicates,
                "ambiguous": self.ambiguous, "rejected": dict(sorted(self.rejected.items()))}


@dataclass
class IngestReport:
    labels: dict[str, LabelReport] = field(default_factory=dict)

    def label(self, name: str) -> LabelReport:
        return self.labels.setdefault(name, LabelReport())

    def merge(self, other: IngestReport) -> IngestReport:
        for name, part in other.labels.items():
            mine = self.label(name)
            for attr in ("seen", "downloaded", "stored", "duplicates", "near_duplicates", "ambiguous"):
                setattr(mine, attr, getattr(mine, attr) + getattr(part, attr))
            mine.rejected.update(part.rejected)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {name: rep.as_dict() for name, rep in sorted(self.labels.items())}

    def total(self, attr: str) -> int:
        return sum(getattr(rep, attr) for rep in self.labels.values())


class HashIndex:
    """Near-duplicate lookup without a scan: two 64-bit hashes within t bits of each other agree exactly on at
    least one of t+1 disjoint bands (pigeonhole), so only images sharing a band are compared."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        count = max(1, min(threshold + 1, 64))
        widths = [64 // count + (1 if i < 64 % count else 0) for i in range(count)]
        self._bands: list[tuple[int, int]] = []
        shift = 0
        for width in widths:
            self._bands.append((shift, (1 << width) - 1))
            shift += width
        self._buckets: dict[tuple[int, int], list[tuple[str, int]]] = {}
        self.size = 0

    def add(self, key: str, value: int) -> None:
        for index, (shift, mask) in enumerate(self._bands):
            self._buckets.setdefault((index, (value >> shift) & mask), []).append((key, value))
        self.size += 1

    def find(self, key: str, value: int) -> str | None:
        """A stored key within the threshold of value (other than key itself), or None."""
        for index, (shift, mask) in enumerate(self._bands):
            for other_key, other in self._buckets.get((index, (value >> shift) & mask), ()):
                if other_key != key and (other ^ value).bit_count() <= self.threshold:
                    return other_key
        return None


class Ingestor:
    """Thread-safe; keeps the perceptual hashes of the labels it touches in memory."""

    def __init__(self, store: ImageStore, near_threshold: int = DEFAULT_NEAR_THRESHOLD, min_side: int = 16):
        self.store = store
        self.near_threshold = near_threshold
        self.min_side = min_side
        self.report = IngestReport()
        # Per-label band indexes: the near-duplicate lookup is the hot loop of a large ingest.
        self._hashes: dict[str, HashIndex] = {}
        self._all_loaded = False
        self._groups: dict[str, str] = {}  # key -> split group, for images grouped in this process
        self._lock = threading.Lock()

    def _label_hashes(self, label: str) -> HashIndex:
        if label not in self._hashes:
            index = HashIndex(self.near_threshold)
            for key, phash in self.store.phashes(label):
                index.add(key, int(phash, 16))
            self._hashes[label] = index
        return self._hashes[label]

    def _near_duplicate(self, label: str, key: str, phash: str) -> str | None:
        if self.near_threshold < 0:
            return None
        return self._label_hashes(label).find(key, int(phash, 16))

    def _split_group(self, label: str, key: str, phash: str) -> str | None:
        """A near duplicate under another label shares that image's split: no test image copy is trained."""
        if self.near_threshold < 0:
            return None
        if not self._all_loaded:
            for other in self.store.labels():
                self._label_hashes(other)
            self._all_loaded = True
        value = int(phash, 16)
        for other, index in self._hashes.items():
            match = index.find(key, value) if other != label else None
            if match:
                return self._groups.get(match, match)
        return None

    def reject(self, label: str, reason: str, report: IngestReport | None = None) -> str:
        with self._lock:
            (report or self.report).label(label).rejected[reason] += 1
        return f"rejected:{reason}"

    def ingest(
        self, data: bytes, label: str, source: dict[str, Any] | None = None,
        report: IngestReport | None = None,
    ) -> str:
        """Returns the outcome: stored, duplicate, near_duplicate, ambiguous or rejected:<reason>.

        Counts go to `report` when given (one per page task), else to self.report.
        """
        try:
            info, _ = inspect_image(data, self.min_side)
        except ImageRejected as exc:
            return self.reject(label, exc.reason, report)
        with self._lock:
            counts = (report or self.report).label(label)
            counts.downloaded += 1
            if self._near_duplicate(label, info.key, info.phash):
                counts.near_duplicates += 1
                return "near_duplicate"
            group = self._split_group(label, info.key, info.phash)
            result = self.store.put_image(data, info, label, source, split_group=group)
            if group:
                self._groups[info.key] = group
            self._label_hashes(label).add(info.key, int(info.phash, 16))
            if result.ambiguous:
                counts.ambiguous += 1
                return "ambiguous"
            if not result.created:
                counts.duplicates += 1
                return "duplicate"
            counts.stored += 1
            return "stored"


def folder_images(root: Path) -> Iterable[tuple[str, Path]]:
    """(label, path) for every image file under root/<label>/."""
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(label_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                yield label_dir.name, path


def ingest_paths(
    ingestor: Ingestor, items: list[tuple[str, Path]], progress: Callable[[int, int], None] | None = None
) -> IngestReport:
    for done, (label, path) in enumerate(items, start=1):
        ingestor.report.label(label).seen += 1
        source = {"engine": "folder", "original": str(path.name)}
        ingestor.ingest(path.read_bytes(), label, source)
        if progress:
            progress(done, len(items))
    return ingestor.report


@task(name="ingest-folder")
def ingest_folder(
    folder: str, store_url: str | None = None, labels: list[str] | None = None
) -> dict[str, Any]:
    """Ingest DIR/<label>/* into the store; returns the ingest report as a dict."""
    logger = get_run_logger()
    items = [(label, path) for label, path in folder_images(Path(folder))
             if labels is None or label in labels]
    store = open_store(store_url)
    ingestor = Ingestor(store)
    step = max(1, len(items) // 10)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            logger.info("ingested %d/%d images from %s", done, total, folder)

    report = ingest_paths(ingestor, items, progress)
    return report.as_dict()
