"""Training attempts in the SQLite store: one row per attempt, the record itself as JSON."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from store.base import StoreError, attempt_order, merge_attempt, new_attempt


@contextmanager
def immediate_transaction(
    lock: threading.RLock, connect: Callable[[], sqlite3.Connection]
) -> Iterator[sqlite3.Connection]:
    """A write transaction taken at once (BEGIN IMMEDIATE): concurrent writers queue on the busy timeout
    instead of failing when a read lock cannot be upgraded."""
    with lock:
        conn = connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class SQLiteAttempts:
    """Mixed into SQLiteStore, which provides the connection, its lock and `_tx`."""

    url: str
    _lock: threading.RLock
    _connect: Callable[[], sqlite3.Connection]
    _tx: Callable[..., list[tuple]]

    def create_attempt(self, doc: dict[str, Any]) -> str:
        attempt = new_attempt(doc)
        try:
            self._tx("INSERT INTO attempts (id, model_name, status, created_at, doc) VALUES (?,?,?,?,?)",
                     (attempt["id"], attempt["model_name"], attempt["status"], attempt["created_at"],
                      json.dumps(attempt)))
        except sqlite3.IntegrityError:
            raise StoreError(f"{self.url}: attempt {attempt['id']!r} already exists") from None
        return attempt["id"]

    def update_attempt(self, attempt_id: str, **fields: Any) -> dict[str, Any]:
        """Raises KeyError for an unknown attempt."""
        with immediate_transaction(self._lock, self._connect) as conn:
            row = conn.execute("SELECT doc FROM attempts WHERE id=?", (attempt_id,)).fetchone()
            if row is None:
                raise KeyError(f"no attempt {attempt_id!r}")
            doc = merge_attempt(json.loads(row[0]), fields)
            conn.execute("UPDATE attempts SET model_name=?, status=?, doc=? WHERE id=?",
                         (doc["model_name"], doc["status"], json.dumps(doc), attempt_id))
        return doc

    def get_attempt(self, attempt_id: str) -> dict[str, Any] | None:
        rows = self._tx("SELECT doc FROM attempts WHERE id=?", (attempt_id,))
        return json.loads(rows[0][0]) if rows else None

    def find_attempts(self, model_name: str) -> list[dict[str, Any]]:
        rows = self._tx("SELECT doc FROM attempts WHERE model_name=?", (model_name,))
        docs = [json.loads(r[0]) for r in rows]
        return sorted(docs, key=attempt_order)

    def list_attempts(self) -> list[dict[str, Any]]:
        return sorted((json.loads(r[0]) for r in self._tx("SELECT doc FROM attempts")), key=attempt_order)

    def delete_attempt(self, attempt_id: str) -> bool:
        with self._lock:
            cur = self._connect().execute("DELETE FROM attempts WHERE id=?", (attempt_id,))
            return cur.rowcount > 0
