"""The shared store: Couchbase Server or Capella through the official SDK 4.x.

Layout (bucket from SERPTRAIN_COUCHBASE_BUCKET or the URL path): `images.meta` holds one JSON document per
image (key = sha256) plus the per-label index documents of store/couchbase_index.py, `images.blobs` the raw
bytes (RawBinaryTranscoder: no base64), `training.attempts` one document per attempt plus `_attempt_index`
({"ids": {id: {model_name, created_at}}}), so listing attempts is a key-value read too. Concurrent label
changes on an image go through CAS (replace with the CAS read); index and counters through sub-document
upserts and counters, which the server applies atomically. Nothing connects at import time: tests hand a
stand-in cluster to the constructor, `from_url` connects to a real one.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from typing import Any

from couchbase import exceptions as cbx
from couchbase.options import GetMultiOptions
from couchbase.transcoder import RawBinaryTranscoder

from store.base import SPLITS, ImageMeta
from store.couchbase_attempts import CouchbaseAttempts
from store.couchbase_index import LabelIndex
from store.couchbase_layout import connect, ensure_layout, guarded, open_bucket, split_url
from store.couchbase_writes import BATCH, STATS, CouchbaseWrites, raise_unless_missing

_RAW = RawBinaryTranscoder()


def _source_order(src: dict[str, Any]) -> tuple[str, str]:
    rest = {k: v for k, v in src.items() if k != "label"}
    return src.get("label", ""), json.dumps(rest, sort_keys=True)


class CouchbaseStore(CouchbaseWrites, CouchbaseAttempts):
    def __init__(self, cluster: Any, bucket_name: str = "serptrain", url: str | None = None,
                 check_layout: bool = True):
        self.cluster = cluster
        self.bucket_name = bucket_name
        self.url = url or f"couchbase://(injected)/{bucket_name}"
        self._check_layout = check_layout
        self._bucket: Any = None
        self._index: LabelIndex | None = None
        self._owns_cluster = False
        self._pid = os.getpid()
        self._reconnect: Callable[[], Any] | None = None  # from_url's: SDK connections do not survive fork

    @classmethod
    def from_url(cls, url: str, user: str | None = None, password: str | None = None,
                 bucket: str | None = None, timeout_s: float | None = None, check_layout: bool = True,
                 ) -> CouchbaseStore:
        """Connect now (credentials: the arguments, else SERPTRAIN_COUCHBASE_*); the bucket opens on use."""
        from models.settings import load_settings

        settings = load_settings()
        _, url_bucket = split_url(url)
        secret = password or settings.couchbase_password.get_secret_value()

        def connect_now() -> Any:
            return connect(url, user or settings.couchbase_user, secret,
                           timeout_s or settings.couchbase_timeout_s)

        store = cls(connect_now(), bucket or url_bucket or settings.couchbase_bucket, url, check_layout)
        store._owns_cluster, store._reconnect = True, connect_now
        return store

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for a worker process: the URL only; the worker connects with its own SERPTRAIN_* env."""
        if not self._owns_cluster:
            raise TypeError("a CouchbaseStore built on a handed-in cluster cannot be sent to another process")
        return {"url": self.url, "bucket": self.bucket_name, "check_layout": self._check_layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(CouchbaseStore.from_url(state["url"], bucket=state["bucket"],
                                                     check_layout=state["check_layout"]).__dict__)

    # collections, opened on first use -----------------------------------------------------------
    def _open(self) -> Any:
        if self._pid != os.getpid() and self._reconnect is not None:  # forked (DataLoader worker): reconnect
            self.cluster, self._bucket, self._index, self._pid = self._reconnect(), None, None, os.getpid()
        if self._bucket is None:
            self._bucket = open_bucket(self.cluster, self.bucket_name, self.url, self._check_layout)
        return self._bucket

    @property
    def meta(self) -> Any:
        return self._open().scope("images").collection("meta")

    @property
    def blobs(self) -> Any:
        return self._open().scope("images").collection("blobs")

    @property
    def attempts(self) -> Any:
        return self._open().scope("training").collection("attempts")

    @property
    def index(self) -> LabelIndex:
        if self._index is None:
            self._index = LabelIndex(self.meta)
        return self._index

    @guarded
    def setup(self) -> list[str]:
        report = ensure_layout(self.cluster, self.bucket_name, self.url)
        self._bucket = None
        self._open()
        return report

    # images: writes in store/couchbase_writes.py ------------------------------------------------
    @guarded
    def has_image(self, key: str) -> bool:
        return bool(self.meta.exists(key).exists)

    @guarded
    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """Missing keys are left out of the answer."""
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), BATCH):
            got = self.blobs.get_multi(keys[start:start + BATCH], GetMultiOptions(transcoder=_RAW))
            raise_unless_missing(got)
            found.update((key, result.value) for key, result in got.results.items())
        return found

    @guarded
    def get_meta(self, key: str) -> ImageMeta | None:
        try:
            doc = self.meta.get(key).content_as[dict]
        except cbx.DocumentNotFoundException:
            return None
        return ImageMeta(doc["key"], sorted(doc["labels"]), doc["width"], doc["height"], doc["format"],
                         doc["nbytes"], doc["phash"], doc["split"], doc["excluded"], doc["ambiguous"],
                         doc["added_at"], sorted(doc["sources"], key=_source_order))

    def _label_keys(self, label: str | None, split: str | None, include_excluded: bool) -> list[str]:
        if split is not None and split not in SPLITS:
            return []
        names = self.index.labels() if label is None else [label]
        found = [self.index.load(name) for name in names]
        lists = [keys.keys(split, include_excluded) for keys in found if keys is not None]
        if len(lists) == 1:
            return lists[0]
        return sorted({key for keys in lists for key in keys})

    @guarded
    def keys(self, label: str | None = None, split: str | None = None, include_excluded: bool = False
             ) -> list[str]:
        return list(self._label_keys(label, split, include_excluded))

    @guarded
    def sample(self, label: str, n: int, split: str | None = None, rng: random.Random | None = None
               ) -> list[str]:
        """n keys drawn uniformly without replacement (all of them if fewer), excluded/ambiguous left out."""
        pool = self._label_keys(label, split, False)
        return (rng or random).sample(pool, min(n, len(pool)))

    @guarded
    def count(self, label: str | None = None, split: str | None = None, include_excluded: bool = False
              ) -> int:
        return len(self._label_keys(label, split, include_excluded))

    @guarded
    def labels(self) -> list[str]:
        return self.index.labels()

    @guarded
    def phashes(self, label: str) -> list[tuple[str, str]]:
        keys = self.index.load(label)
        if keys is None:
            return []
        return sorted((k, p) for split in SPLITS for k, p in keys.phash[split].items())

    @guarded
    def stats(self) -> dict[str, Any]:
        try:
            counters = self.meta.get(STATS).content_as[dict]
        except cbx.DocumentNotFoundException:
            counters = {}
        per_label = {}
        for label in self.index.labels():
            keys = self.index.load(label)
            per_label[label] = {s: len(keys.keys(s, False)) if keys else 0 for s in SPLITS}
        totals = {k: counters.get(k, 0) for k in ("images", "bytes", "excluded", "ambiguous")}
        return {"store": self.url, **totals,
                "labels": per_label}

    def close(self) -> None:
        """Closes the cluster only when from_url opened it: one handed in belongs to its owner."""
        if self._owns_cluster and self._pid == os.getpid():  # a forked child leaves the parent's connection
            self.cluster.close()
        self._bucket = None
        self._index = None

