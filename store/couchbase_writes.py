"""Image writes in Couchbase: bulk puts, labels and marks, each image update done with CAS.

A new image is written bytes first (`images.blobs`), then its meta document with insert, which fails for
the second of two writers; that writer then adds its label the CAS way: read, change, replace with the CAS
read, again when another writer got in between. The per-label index (store/couchbase_index.py) and the
counters document follow with sub-document upserts and counters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import couchbase.subdocument as SD
from couchbase import exceptions as cbx
from couchbase.options import MutateInOptions, ReplaceOptions, UpsertMultiOptions
from couchbase.transcoder import RawBinaryTranscoder

from models.images import ImageInfo
from store.base import ImagePut, PutResult, StoreError, jsonable, now_iso, split_of
from store.couchbase_index import Entry, LabelIndex
from store.couchbase_layout import guarded

BATCH = 1024  # images per get_multi / upsert_multi round trip; index writes then group ~10 keys per chunk
CAS_RETRIES = 64
STATS = "stats"  # {"images", "bytes", "excluded", "ambiguous"} kept by sub-document counters
_RAW = RawBinaryTranscoder()
_UPSERT = MutateInOptions(store_semantics=SD.StoreSemantics.UPSERT)


def raise_unless_missing(outcome: Any) -> None:
    """A get_multi answer: a missing document is an answer, anything else is a failure."""
    for exc in outcome.exceptions.values():
        if not isinstance(exc, cbx.DocumentNotFoundException):
            raise exc


def _source(source: dict[str, Any] | None, label: str) -> dict[str, Any] | None:
    return jsonable(source) | {"label": label} if source else None


class CouchbaseWrites:
    """Mixed into CouchbaseStore, which provides `url`, the `meta` and `blobs` collections and `index`."""

    url: str
    meta: Any
    blobs: Any
    index: LabelIndex

    def put_image(self, data: bytes, info: ImageInfo, label: str, source: dict[str, Any] | None = None,
                  split_group: str | None = None) -> PutResult:
        return self.put_images([ImagePut(data, info, label, source, split_group)])[0]

    @guarded
    def put_images(self, items: Sequence[ImagePut]) -> list[PutResult]:
        results: list[PutResult] = []
        for start in range(0, len(items), BATCH):
            results.extend(self._put_batch(items[start:start + BATCH]))
        return results

    def _put_batch(self, batch: Sequence[ImagePut]) -> list[PutResult]:
        keys = list(dict.fromkeys(item.info.key for item in batch))
        found = self.meta.get_multi(keys)
        raise_unless_missing(found)
        fresh: dict[str, ImagePut] = {}
        for item in batch:
            if item.info.key not in found.results:
                fresh.setdefault(item.info.key, item)
        if fresh:  # bytes first: a meta document never points at missing bytes
            self._check(self.blobs.upsert_multi({k: i.data for k, i in fresh.items()},
                                                UpsertMultiOptions(transcoder=_RAW)))
            inserted = self.meta.insert_multi({k: self._new_doc(i) for k, i in fresh.items()})
            for key, exc in inserted.exceptions.items():
                if not isinstance(exc, cbx.DocumentExistsException):
                    raise exc
                del fresh[key]  # another writer stored it a moment ago: add our label the CAS way
        entries: list[Entry] = []
        results = []
        for item in batch:
            key = item.info.key
            if fresh.get(key) is item:
                split = split_of(item.split_group or key)
                entries.append(Entry(item.label, split, key, item.info.phash, False))
                results.append(PutResult(key, True, False, split))
            else:
                doc, more = self._add_label_cas(key, item.label, item.source)
                entries += more
                results.append(PutResult(key, False, len(doc["labels"]) > 1, doc["split"]))
        self.index.write(entries)
        if fresh:
            self._count(images=len(fresh), bytes=sum(i.info.nbytes for i in fresh.values()))
        return results

    @staticmethod
    def _check(outcome: Any) -> None:
        for exc in outcome.exceptions.values():
            raise exc

    def _new_doc(self, item: ImagePut) -> dict[str, Any]:
        info = item.info
        source = _source(item.source, item.label)
        return {"type": "image", "key": info.key, "labels": [item.label], "width": info.width,
                "height": info.height, "format": info.format, "nbytes": info.nbytes, "phash": info.phash,
                "split": split_of(item.split_group or info.key), "excluded": False, "ambiguous": False,
                "added_at": now_iso(), "sources": [source] if source else []}

    def _cas_update(self, key: str, change: Callable[[dict[str, Any]], bool]) -> tuple[dict, dict] | None:
        """Read, change, replace with the CAS read; retried when another writer got in between.
        Returns (before, after), or None when the image is not stored."""
        for _ in range(CAS_RETRIES):
            try:
                got = self.meta.get(key)
            except cbx.DocumentNotFoundException:
                return None
            before = got.content_as[dict]
            after = json.loads(json.dumps(before))
            if not change(after):
                return before, after
            try:
                self.meta.replace(key, after, ReplaceOptions(cas=got.cas))
                return before, after
            except cbx.CasMismatchException:
                continue
        raise StoreError(f"{self.url}: image {key} kept changing under {CAS_RETRIES} attempts to update it")

    def _add_label_cas(self, key: str, label: str, source: dict[str, Any] | None) -> tuple[dict, list[Entry]]:
        src = _source(source, label)

        def change(doc: dict[str, Any]) -> bool:
            changed = False
            if label not in doc["labels"]:
                doc["labels"] = sorted([*doc["labels"], label])
                # flagged when a label is added, not on every re-put: a person's un-marking stays
                doc["ambiguous"] = doc["ambiguous"] or len(doc["labels"]) > 1
                changed = True
            if src and src not in doc["sources"]:
                doc["sources"].append(src)
                changed = True
            return changed

        outcome = self._cas_update(key, change)
        if outcome is None:
            raise KeyError(key)
        before, after = outcome
        off = after["excluded"] or after["ambiguous"]
        entries = []
        if label not in before["labels"] or not self.index.has(label, after["split"], key):
            entries.append(Entry(label, after["split"], key, after["phash"], off))
        if after["ambiguous"] and not before["ambiguous"]:
            entries += [Entry(other, after["split"], key, None, True) for other in after["labels"]]
            self._count(ambiguous=1)
        return after, entries

    def _count(self, **deltas: int) -> None:
        specs = [SD.increment(name, n) if n > 0 else SD.decrement(name, -n)
                 for name, n in deltas.items() if n]
        if specs:
            self.meta.mutate_in(STATS, [SD.upsert("type", "stats"), *specs], _UPSERT)

    @guarded
    def add_label(self, key: str, label: str, source: dict[str, Any] | None = None) -> bool:
        """Raises KeyError for an image that is not stored."""
        doc, entries = self._add_label_cas(key, label, source)
        self.index.write(entries)
        return len(doc["labels"]) > 1

    @guarded
    def mark(self, key: str, *, excluded: bool | None = None, ambiguous: bool | None = None) -> None:
        """Unknown keys are ignored: marking is a curation step, not a way to create images."""
        def change(doc: dict[str, Any]) -> bool:
            new = {"excluded": doc["excluded"] if excluded is None else excluded,
                   "ambiguous": doc["ambiguous"] if ambiguous is None else ambiguous}
            changed = any(doc[k] != v for k, v in new.items())
            doc.update(new)
            return changed

        outcome = self._cas_update(key, change)
        if outcome is None:
            return
        before, after = outcome
        self._count(**{flag: int(after[flag]) - int(before[flag]) for flag in ("excluded", "ambiguous")})
        off_before = before["excluded"] or before["ambiguous"]
        off_after = after["excluded"] or after["ambiguous"]
        if off_before != off_after:
            self.index.write([Entry(lb, after["split"], key, None, off_after) for lb in after["labels"]])
