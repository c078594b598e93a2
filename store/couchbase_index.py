"""Per-label index documents in `images.meta`, so listing and sampling a label are key-value reads.

For each label there is a head document `label::<name>` ({"chunks": N, "version": v}) and, per split, N
chunk documents `label::<name>::<split>::<c>` ({"keys": {key: phash}, "off": {key: bool}}). An image goes
to chunk `int(key[8:16], 16) % N` (the split uses key[:8]), so its place is a pure function of its key and
writers never contend on one big list. Every write is a sub-document upsert, hence idempotent and never
a read-modify-write; `off` marks excluded and ambiguous images. After writing, the head's version is
incremented with a sub-document counter.

A reader caches a label's keys per process and checks one small sub-document lookup (the version) per
call, so sampling costs O(batch) whatever the size of the label; the chunks are re-read (one get_multi)
only when some process wrote to that label since.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import couchbase.subdocument as SD
from couchbase import exceptions as cbx
from couchbase.options import MutateInOptions

from store.base import SPLITS, StoreError

CHUNKS = 32  # per label and split: 100k images → ~2.5k keys (~220 kB) per train chunk; 20 MB is the limit
SPECS_PER_WRITE = 15  # the server takes 16 specs per mutate_in; one is the "type" marker
REGISTRY = "labels"  # {"names": [...]}: every label that ever had an image
_UPSERT = MutateInOptions(store_semantics=SD.StoreSemantics.UPSERT)


def escape(part: str) -> str:
    """A sub-document path element that may hold dots or backticks."""
    return "`" + part.replace("`", "``") + "`"


@dataclass(frozen=True)
class Entry:
    """One index write: phash None leaves the key map alone; off None leaves the off map alone."""

    label: str
    split: str
    key: str
    phash: str | None
    off: bool | None


@dataclass
class LabelKeys:
    version: int
    phash: dict[str, dict[str, str]]  # split → key → phash
    off: dict[str, set[str]]  # split → keys that are excluded or ambiguous
    _sorted: dict[tuple[str | None, bool], list[str]] = field(default_factory=dict)

    def keys(self, split: str | None, include_off: bool) -> list[str]:
        """Sorted, so that a seeded rng draws the same keys on every backend."""
        memo = (split, include_off)
        if memo not in self._sorted:
            splits = SPLITS if split is None else (split,)
            self._sorted[memo] = sorted(
                key for s in splits for key in self.phash.get(s, {}) if include_off or key not in self.off[s]
            )
        return self._sorted[memo]


class LabelIndex:
    def __init__(self, meta: Any):
        self.meta = meta
        self._chunks: dict[str, int] = {}
        self._cache: dict[str, LabelKeys] = {}

    @staticmethod
    def head_id(label: str) -> str:
        return f"label::{label}"

    @staticmethod
    def chunk_id(label: str, split: str, chunk: int) -> str:
        return f"label::{label}::{split}::{chunk}"

    def _ensure(self, label: str) -> int:
        """The label's chunk count, creating its head and registering its name on first use."""
        if label not in self._chunks:
            try:
                self.meta.insert(self.head_id(label), {"type": "label", "name": label, "chunks": CHUNKS,
                                                       "version": 0})
            except cbx.DocumentExistsException:
                pass
            try:
                specs = [SD.upsert("type", "label_registry"),
                         SD.array_addunique("names", label, create_parents=True)]
                self.meta.mutate_in(REGISTRY, specs, _UPSERT)
            except cbx.PathExistsException:
                pass
            chunks = self.meta.lookup_in(self.head_id(label), [SD.get("chunks")]).content_as[int](0)
            self._chunks[label] = chunks
        return self._chunks[label]

    def write(self, entries: list[Entry]) -> None:
        by_chunk: dict[str, list[Any]] = defaultdict(list)
        touched: set[str] = set()
        for e in entries:
            doc_id = self.chunk_id(e.label, e.split, int(e.key[8:16], 16) % self._ensure(e.label))
            if e.phash is not None:
                by_chunk[doc_id].append(SD.upsert(f"keys.{escape(e.key)}", e.phash, create_parents=True))
            if e.off is not None:
                by_chunk[doc_id].append(SD.upsert(f"off.{escape(e.key)}", e.off, create_parents=True))
            touched.add(e.label)
        for doc_id, specs in by_chunk.items():
            for start in range(0, len(specs), SPECS_PER_WRITE):
                batch = [SD.upsert("type", "label_chunk"), *specs[start:start + SPECS_PER_WRITE]]
                self.meta.mutate_in(doc_id, batch, _UPSERT)
        for label in sorted(touched):  # after the chunks: a reader that sees the new version sees the keys
            self.meta.mutate_in(self.head_id(label), [SD.increment("version", 1)])

    def has(self, label: str, split: str, key: str) -> bool:
        doc_id = self.chunk_id(label, split, int(key[8:16], 16) % self._ensure(label))
        try:
            return bool(self.meta.lookup_in(doc_id, [SD.exists(f"keys.{escape(key)}")]).exists(0))
        except cbx.DocumentNotFoundException:
            return False

    def labels(self) -> list[str]:
        try:
            return sorted(self.meta.lookup_in(REGISTRY, [SD.get("names")]).content_as[list](0))
        except (cbx.DocumentNotFoundException, cbx.PathNotFoundException):
            return []

    def load(self, label: str) -> LabelKeys | None:
        """The label's keys, from this process's cache while its version is unchanged; None: no such label."""
        try:
            head = self.meta.lookup_in(self.head_id(label), [SD.get("version"), SD.get("chunks")])
        except cbx.DocumentNotFoundException:
            return None
        version, chunks = head.content_as[int](0), head.content_as[int](1)
        cached = self._cache.get(label)
        if cached is not None and cached.version == version:
            return cached
        ids = [self.chunk_id(label, s, c) for s in SPLITS for c in range(chunks)]
        found = self.meta.get_multi(ids)
        for doc_id, exc in found.exceptions.items():
            if not isinstance(exc, cbx.DocumentNotFoundException):
                raise StoreError(f"reading {doc_id}: {exc}")
        phash: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
        off: dict[str, set[str]] = {s: set() for s in SPLITS}
        for doc_id, result in found.results.items():
            split = doc_id.split("::")[-2]
            doc = result.content_as[dict]
            phash[split].update(doc.get("keys", {}))
            off[split].update(k for k, flag in doc.get("off", {}).items() if flag)
        self._cache[label] = LabelKeys(version, phash, off)
        return self._cache[label]
