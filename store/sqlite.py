"""The embedded default: one SQLite file, WAL, safe for several processes at once."""

from __future__ import annotations

import json
import os
import random
import secrets
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.images import ImageInfo
from store.base import ImageMeta, PutResult, StoreError, split_of

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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_attempt_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class SQLiteStore:
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
        self._label_keys: dict[tuple[str, str | None], list[str]] = {}
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(SCHEMA)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.url}: cannot open the SQLite store: {exc}") from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _tx(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connect().execute(sql, args).fetchall()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])

    # images -----------------------------------------------------------------------------------
    def put_image(
        self, data: bytes, info: ImageInfo, label: str, source: dict[str, Any] | None = None,
        split_group: str | None = None,
    ) -> PutResult:
        split = split_of(split_group or info.key)
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT split FROM images WHERE key=?", (info.key,)).fetchone()
                created = row is None
                if created:
                    conn.execute(
                        "INSERT INTO images (key,width,height,format,nbytes,phash,split,added_at) "
                        "VALUES (?,?,?,?,?,?,?,?)",
                        (info.key, info.width, info.height, info.format, info.nbytes, info.phash, split, now_iso()),
                    )
                    conn.execute("INSERT INTO blobs (key, data) VALUES (?, ?)", (info.key, sqlite3.Binary(data)))
                else:
                    split = row[0]
                ambiguous = self._add_label_locked(conn, info.key, label, split, source)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._label_keys.clear()
        return PutResult(info.key, created, ambiguous, split)

    def _add_label_locked(
        self, conn: sqlite3.Connection, key: str, label: str, split: str, source: dict[str, Any] | None
    ) -> bool:
        conn.execute("INSERT OR IGNORE INTO image_labels (label, key, split) VALUES (?,?,?)", (label, key, split))
        if source:
            conn.execute("INSERT OR IGNORE INTO sources (key, label, source) VALUES (?,?,?)",
                         (key, label, json.dumps(source, sort_keys=True)))
        n_labels = conn.execute("SELECT count(*) FROM image_labels WHERE key=?", (key,)).fetchone()[0]
        if n_labels > 1:
            conn.execute("UPDATE images SET ambiguous=1 WHERE key=?", (key,))
        return n_labels > 1

    def add_label(self, key: str, label: str, source: dict[str, Any] | None = None) -> bool:
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT split FROM images WHERE key=?", (key,)).fetchone()
                if row is None:
                    conn.execute("ROLLBACK")
                    raise KeyError(key)
                ambiguous = self._add_label_locked(conn, key, label, row[0], source)
                conn.execute("COMMIT")
            except KeyError:
                raise
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._label_keys.clear()
        return ambiguous

    def has_image(self, key: str) -> bool:
        return bool(self._tx("SELECT 1 FROM images WHERE key=?", (key,)))

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, data in self._tx(f"SELECT key, data FROM blobs WHERE key IN ({marks})", tuple(chunk)):
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
                   for r in self._tx("SELECT source, label FROM sources WHERE key=?", (key,))]
        return ImageMeta(k, labels, w, h, fmt, nbytes, phash, split, bool(excluded), bool(ambiguous),
                         added_at, sources)

    def keys(self, label: str | None = None, split: str | None = None, include_excluded: bool = False) -> list[str]:
        where, args = ["1=1"], []
        if label is not None:
            where.append("l.label=?")
            args.append(label)
        if split is not None:
            where.append("l.split=?")
            args.append(split)
        if not include_excluded:
            where.append("i.excluded=0 AND i.ambiguous=0")
        sql = (f"SELECT DISTINCT l.key FROM image_labels l JOIN images i ON i.key=l.key "
               f"WHERE {' AND '.join(where)} ORDER BY l.key")
        return [r[0] for r in self._tx(sql, tuple(args))]

    def sample(self, label: str, n: int, split: str | None = None, rng: random.Random | None = None) -> list[str]:
        cache_key = (label, split)
        if cache_key not in self._label_keys:
            self._label_keys[cache_key] = self.keys(label, split)
        pool = self._label_keys[cache_key]
        return (rng or random).sample(pool, min(n, len(pool)))

    def count(self, label: str | None = None, split: str | None = None, include_excluded: bool = False) -> int:
        return len(self.keys(label, split, include_excluded))

    def labels(self) -> list[str]:
        return [r[0] for r in self._tx("SELECT DISTINCT label FROM image_labels ORDER BY label")]

    def phashes(self, label: str) -> list[tuple[str, str]]:
        return [(k, p) for k, p in self._tx(
            "SELECT i.key, i.phash FROM image_labels l JOIN images i ON i.key=l.key WHERE l.label=?", (label,))]

    def mark(self, key: str, *, excluded: bool | None = None, ambiguous: bool | None = None) -> None:
        if excluded is not None:
            self._tx("UPDATE images SET excluded=? WHERE key=?", (int(excluded), key))
        if ambiguous is not None:
            self._tx("UPDATE images SET ambiguous=? WHERE key=?", (int(ambiguous), key))
        self._label_keys.clear()

    def stats(self) -> dict[str, Any]:
        per_label: dict[str, dict[str, int]] = {}
        for label, split, n in self._tx(
            "SELECT l.label, l.split, count(*) FROM image_labels l JOIN images i ON i.key=l.key "
            "WHERE i.excluded=0 AND i.ambiguous=0 GROUP BY l.label, l.split"
        ):
            per_label.setdefault(label, {"train": 0, "val": 0, "test": 0})[split] = n
        for label in self.labels():
            per_label.setdefault(label, {"train": 0, "val": 0, "test": 0})
        images, nbytes, excluded, ambiguous = self._tx(
            "SELECT count(*), coalesce(sum(nbytes),0), coalesce(sum(excluded),0), coalesce(sum(ambiguous),0) FROM images"
        )[0]
        return {"store": self.url, "images": images, "bytes": nbytes, "excluded": excluded,
                "ambiguous": ambiguous, "labels": per_label}

    # attempts ---------------------------------------------------------------------------------
    def create_attempt(self, doc: dict[str, Any]) -> str:
        attempt = {"id": doc.get("id") or new_attempt_id(), "status": "validating", "created_at": now_iso(), **doc}
        attempt["updated_at"] = attempt["created_at"]
        self._tx("INSERT INTO attempts (id, model_name, status, created_at, doc) VALUES (?,?,?,?,?)",
                 (attempt["id"], attempt["model_name"], attempt["status"], attempt["created_at"],
                  json.dumps(attempt, default=str)))
        return attempt["id"]

    def update_attempt(self, attempt_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT doc FROM attempts WHERE id=?", (attempt_id,)).fetchone()
                if row is None:
                    raise KeyError(f"no attempt {attempt_id!r}")
                doc = json.loads(row[0]) | fields | {"updated_at": now_iso()}
                conn.execute("UPDATE attempts SET status=?, doc=? WHERE id=?",
                             (doc["status"], json.dumps(doc, default=str), attempt_id))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return doc

    def get_attempt(self, attempt_id: str) -> dict[str, Any] | None:
        rows = self._tx("SELECT doc FROM attempts WHERE id=?", (attempt_id,))
        return json.loads(rows[0][0]) if rows else None

    def find_attempts(self, model_name: str) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._tx(
            "SELECT doc FROM attempts WHERE model_name=? ORDER BY created_at, id", (model_name,))]

    def list_attempts(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._tx("SELECT doc FROM attempts ORDER BY created_at, id")]

    def delete_attempt(self, attempt_id: str) -> bool:
        with self._lock:
            cur = self._connect().execute("DELETE FROM attempts WHERE id=?", (attempt_id,))
            return cur.rowcount > 0

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
