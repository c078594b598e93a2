"""The embedded default: one SQLite file, WAL, safe for several processes at once."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.images import ImageInfo
from store.base import ImageMeta, ImagePut, PutResult, StoreError, jsonable, new_attempt_id, now_iso, split_of
from store.sqlite_attempts import SQLiteAttempts, immediate_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY, width INTEGER, height INTEGER, format TEXT, nbytes INTEGER, phash TEXT,
    split TEXT NOT NULL, excluded INTEGER NOT NULL DEFAULT 0, ambiguous INTEGER NOT NULL DEFAULT 0,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS image_labels (
    label TEXT NOT NULL, key TEXT NOT NULL, split TEXT NOT NULL, PRIMARY KEY (label, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_labels_split ON image_labels (label, split, key);
CREATE INDEX IF NOT EXISTS image_labels_key ON image_labels (key);
CREATE TABLE IF NOT EXISTS sources (
    key TEXT NOT NULL, label TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (key, label, source)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY, model_name TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_model ON attempts (model_name, created_at);
"""


__all__ = ["SQLiteStore", "new_attempt_id", "now_iso"]
CACHE_KIB = 32 * 1024  # page cache per connection (filled only as pages are read)
MMAP_BYTES = 1 << 30  # reads through the OS page cache, no copy per page; the file may be larger
BATCH = 500  # images per write transaction: amortizes the commit, yet shares the write lock often


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _marks(chunk: list) -> str:
    return ",".join("?" * len(chunk))


class SQLiteStore(SQLiteAttempts):
    """One connection per process (re-opened after fork: DataLoader workers), serialized per thread."""

    def __init__(self, url: str):
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///") or "serptrain.db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{url}: cannot create {self.path.parent}: {exc}") from None
        self._lock = threading.RLock()
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        # sample() draws from a cached, sorted key list per (label, split); it is dropped when this process
        # writes and when PRAGMA data_version says another connection committed, so a draw costs O(n) once
        # and O(batch) afterwards, whatever the size of the dataset.
        self._label_keys: dict[tuple[str, str | None], list[str]] = {}
        # and each pooled key's blob rowid: a batch then reads one integer B-tree instead of the key index and
        # the table (half the page look-ups at 100k images); every row read is checked against its key
        self._rowids: dict[str, int] = {}
        self._data_version = -1
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                # batches fetch random keys: keep the hot B-tree pages in memory instead of re-reading them
                conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
                conn.executescript(SCHEMA)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.url}: cannot open the SQLite store: {exc}") from None
            self._conn, self._pid = conn, os.getpid()
            self._label_keys.clear()
            self._rowids.clear()
        return self._conn

    def _tx(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connect().execute(sql, args).fetchall()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])

    def setup(self) -> list[str]:
        """The file and its tables exist once the store is open; nothing else to create."""
        return [f"SQLite store ready at {self.path.resolve()}"]

    # images -----------------------------------------------------------------------------------
    def put_image(
        self, data: bytes, info: ImageInfo, label: str, source: dict[str, Any] | None = None,
        split_group: str | None = None,
    ) -> PutResult:
        return self.put_images([ImagePut(data, info, label, source, split_group)])[0]

    def put_images(self, items: Sequence[ImagePut]) -> list[PutResult]:
        """Idempotent bulk put: one write transaction per BATCH images."""
        results: list[PutResult] = []
        for start in range(0, len(items), BATCH):
            try:
                with immediate_transaction(self._lock, self._connect) as conn:
                    results.extend(self._put_locked(conn, item) for item in items[start:start + BATCH])
            finally:
                self._label_keys.clear()
        return results

    def _put_locked(self, conn: sqlite3.Connection, item: ImagePut) -> PutResult:
        info = item.info
        split = split_of(item.split_group or info.key)
        row = conn.execute("SELECT split FROM images WHERE key=?", (info.key,)).fetchone()
        created = row is None
        if created:
            conn.execute(
                "INSERT INTO images (key,width,height,format,nbytes,phash,split,added_at) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (info.key, info.width, info.height, info.format, info.nbytes, info.phash, split, now_iso()),
            )
            conn.execute("INSERT INTO blobs (key, data) VALUES (?, ?)", (info.key, sqlite3.Binary(item.data)))
        else:
            split = row[0]  # the first split decided stays: no leakage when the group changes later
        ambiguous = self._add_label_locked(conn, info.key, item.label, split, item.source)
        return PutResult(info.key, created, ambiguous, split)

    def _add_label_locked(
        self, conn: sqlite3.Connection, key: str, label: str, split: str, source: dict[str, Any] | None
    ) -> bool:
        added = conn.execute("INSERT OR IGNORE INTO image_labels (label, key, split) VALUES (?,?,?)",
                             (label, key, split)).rowcount > 0
        if source:
            conn.execute("INSERT OR IGNORE INTO sources (key, label, source) VALUES (?,?,?)",
                         (key, label, json.dumps(jsonable(source), sort_keys=True)))
        n_labels = conn.execute("SELECT count(*) FROM image_labels WHERE key=?", (key,)).fetchone()[0]
        if added and n_labels > 1:  # flagged when a label is added, not on every re-put: un-marking stays
            conn.execute("UPDATE images SET ambiguous=1 WHERE key=?", (key,))
        return n_labels > 1

    def add_label(self, key: str, label: str, source: dict[str, Any] | None = None) -> bool:
        """Raises KeyError for an image that is not stored."""
        try:
            with immediate_transaction(self._lock, self._connect) as conn:
                row = conn.execute("SELECT split FROM images WHERE key=?", (key,)).fetchone()
                if row is None:
                    raise KeyError(key)
                ambiguous = self._add_label_locked(conn, key, label, row[0], source)
        finally:
            self._label_keys.clear()
        return ambiguous

    def has_image(self, key: str) -> bool:
        return bool(self._tx("SELECT 1 FROM images WHERE key=?", (key,)))

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """Missing keys are left out of the answer."""
        found: dict[str, bytes] = {}
        by_rowid = {self._rowids[k]: k for k in keys if k in self._rowids}
        for chunk in _chunks(list(by_rowid), BATCH):
            sql = f"SELECT rowid, key, data FROM blobs WHERE rowid IN ({_marks(chunk)})"
            for rowid, key, data in self._tx(sql, tuple(chunk)):
                if by_rowid.get(rowid) == key:  # a VACUUM elsewhere may have renumbered rows: then by key
                    found[key] = bytes(data)
        for chunk in _chunks([k for k in keys if k not in found], BATCH):
            sql = f"SELECT key, data FROM blobs WHERE key IN ({_marks(chunk)})"
            for key, data in self._tx(sql, tuple(chunk)):
                found[key] = bytes(data)
        return found

    def get_meta(self, key: str) -> ImageMeta | None:
        rows = self._tx("SELECT key,width,height,format,nbytes,phash,split,excluded,ambiguous,added_at "
                        "FROM images WHERE key=?", (key,))
        if not rows:
            return None
        k, w, h, fmt, nbytes, phash, split, excluded, ambiguous, added_at = rows[0]
        labels = [r[0] for r in self._tx("SELECT label FROM image_labels WHERE key=? ORDER BY label", (key,))]
        sources = [json.loads(r[0]) | {"label": r[1]}
                   for r in self._tx("SELECT source, label FROM sources WHERE key=? ORDER BY label, source",
                                     (key,))]
        return ImageMeta(k, labels, w, h, fmt, nbytes, phash, split, bool(excluded), bool(ambiguous),
                         added_at, sources)

    def _where(self, label: str | None, split: str | None, include_excluded: bool) -> tuple[str, tuple]:
        where, args = ["1=1"], []
        if label is not None:
            where.append("l.label=?")
            args.append(label)
        if split is not None:
            where.append("l.split=?")
            args.append(split)
        if not include_excluded:
            where.append("i.excluded=0 AND i.ambiguous=0")
        return " AND ".join(where), tuple(args)

    def keys(self, label: str | None = None, split: str | None = None, include_excluded: bool = False
             ) -> list[str]:
        where, args = self._where(label, split, include_excluded)
        sql = (f"SELECT DISTINCT l.key FROM image_labels l JOIN images i ON i.key=l.key WHERE {where} "
               "ORDER BY l.key")
        return [r[0] for r in self._tx(sql, args)]

    def sample(self, label: str, n: int, split: str | None = None, rng: random.Random | None = None
               ) -> list[str]:
        """n keys drawn uniformly without replacement (all of them if fewer), excluded/ambiguous left out."""
        with self._lock:
            version = self._connect().execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._label_keys.clear()
                self._rowids.clear()
                self._data_version = version
            pool = self._label_keys.get((label, split))
            if pool is None:
                where, args = self._where(label, split, False)
                rows = self._tx("SELECT DISTINCT l.key, b.rowid FROM image_labels l "
                                "JOIN images i ON i.key=l.key JOIN blobs b ON b.key=l.key "
                                f"WHERE {where} ORDER BY l.key", args)
                pool = self._label_keys[(label, split)] = [key for key, _ in rows]
                self._rowids.update(rows)
        return (rng or random).sample(pool, min(n, len(pool)))

    def count(self, label: str | None = None, split: str | None = None, include_excluded: bool = False
              ) -> int:
        where, args = self._where(label, split, include_excluded)
        sql = f"SELECT count(DISTINCT l.key) FROM image_labels l JOIN images i ON i.key=l.key WHERE {where}"
        return self._tx(sql, args)[0][0]

    def labels(self) -> list[str]:
        return [r[0] for r in self._tx("SELECT DISTINCT label FROM image_labels ORDER BY label")]

    def phashes(self, label: str) -> list[tuple[str, str]]:
        return [(k, p) for k, p in self._tx(
            "SELECT i.key, i.phash FROM image_labels l JOIN images i ON i.key=l.key WHERE l.label=? "
            "ORDER BY i.key",
            (label,))]

    def mark(self, key: str, *, excluded: bool | None = None, ambiguous: bool | None = None) -> None:
        """Unknown keys are ignored: marking is a curation step, not a way to create images."""
        with self._lock:
            if excluded is not None:
                self._tx("UPDATE images SET excluded=? WHERE key=?", (int(excluded), key))
            if ambiguous is not None:
                self._tx("UPDATE images SET ambiguous=? WHERE key=?", (int(ambiguous), key))
            self._label_keys.clear()

    def stats(self) -> dict[str, Any]:
        per_label = {label: {"train": 0, "val": 0, "test": 0} for label in self.labels()}
        for label, split, n in self._tx(
            "SELECT l.label, l.split, count(*) FROM image_labels l JOIN images i ON i.key=l.key "
            "WHERE i.excluded=0 AND i.ambiguous=0 GROUP BY l.label, l.split"
        ):
            per_label.setdefault(label, {"train": 0, "val": 0, "test": 0})[split] = n
        images, nbytes, excluded, ambiguous = self._tx(
            "SELECT count(*), coalesce(sum(nbytes),0), coalesce(sum(excluded),0), coalesce(sum(ambiguous),0) "
            "FROM images"
        )[0]
        return {"store": self.url, "images": images, "bytes": nbytes, "excluded": excluded,
                "ambiguous": ambiguous, "labels": per_label}

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
