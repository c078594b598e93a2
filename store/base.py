"""The store contract. Every backend passes the same tests (tests/test_store_contract.py).

Images are keyed by the SHA-256 of their bytes; writes are idempotent. The split of an image is a pure
function of its split group's key (its own key unless it is a near duplicate of an earlier image), so it
never changes as the dataset grows.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from models.errors import UserError
from models.images import ImageInfo

SPLITS = ("train", "val", "test")
SPLIT_PERCENT = {"train": 80, "val": 10, "test": 10}
ATTEMPT_STATUSES = ("validating", "acquiring", "training", "trained", "evaluated", "failed")


def split_of(key: str) -> str:
    bucket = int(key[:8], 16) % 100
    if bucket < SPLIT_PERCENT["train"]:
        return "train"
    if bucket < SPLIT_PERCENT["train"] + SPLIT_PERCENT["val"]:
        return "val"
    return "test"


class StoreError(UserError):
    """The store cannot be reached or refuses: says which store and why."""


def now_iso(precise: bool = False) -> str:
    # attempts use microseconds so that creation order survives several attempts in one second
    return datetime.now(UTC).isoformat(timespec="microseconds" if precise else "seconds")


def new_attempt_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def jsonable(doc: dict[str, Any]) -> dict[str, Any]:
    """What every backend stores: plain JSON (paths, datetimes become strings), same on both backends."""
    return json.loads(json.dumps(doc, default=str))


def new_attempt(doc: dict[str, Any]) -> dict[str, Any]:
    """The record create_attempt stores: defaults first, the caller's fields win, then checked."""
    if not doc.get("model_name"):
        raise StoreError("an attempt needs a model_name")
    created = now_iso(precise=True)
    defaults = {"id": new_attempt_id(), "status": "validating", "created_at": created}
    given = {k: v for k, v in doc.items() if v not in (None, "") or k not in defaults}  # no id: a new one
    attempt = jsonable(defaults | given | {"updated_at": created})
    check_status(attempt["status"])
    return attempt


def merge_attempt(doc: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    if "id" in fields and fields["id"] != doc["id"]:
        raise StoreError(f"attempt {doc['id']}: the id cannot change")
    merged = doc | jsonable(fields) | {"updated_at": now_iso(precise=True)}
    check_status(merged["status"])
    return merged


def check_status(status: str) -> None:
    if status not in ATTEMPT_STATUSES:
        raise StoreError(f"attempt status: expected one of {', '.join(ATTEMPT_STATUSES)}, found {status!r}")


def attempt_order(doc: dict[str, Any]) -> tuple[str, str]:
    return doc.get("created_at", ""), doc.get("id", "")


@dataclass
class PutResult:
    key: str
    created: bool  # False: these exact bytes were already stored
    ambiguous: bool  # the image now carries more than one label
    split: str


@dataclass
class ImagePut:
    """One image for put_images: the same arguments as put_image."""

    data: bytes
    info: ImageInfo
    label: str
    source: dict[str, Any] | None = None
    split_group: str | None = None


@dataclass
class ImageMeta:
    key: str
    labels: list[str]
    width: int
    height: int
    format: str
    nbytes: int
    phash: str
    split: str
    excluded: bool
    ambiguous: bool
    added_at: str
    sources: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class ImageStore(Protocol):
    """What every backend guarantees (tests/test_store_contract.py checks each one):

    - put_image/put_images: idempotent by content key; `created` is False for bytes already stored; the
      split is decided once (from split_group or the key) and never changes; a second label on an image
      flags it ambiguous (a person's `mark(ambiguous=False)` is not undone by re-ingesting).
    - keys/sample/count leave excluded and ambiguous images out unless include_excluded; keys are sorted,
      so a seeded rng samples the same keys on every backend; sample draws uniformly without replacement
      and costs O(n) once per process and label, O(batch) afterwards, seeing other processes' writes.
    - get_many leaves missing keys out; add_label and update_attempt raise KeyError for unknown ids;
      mark ignores unknown keys; attempts are plain JSON, listed oldest first; a bad status, a missing
      model_name or a duplicate id raise StoreError.
    """

    url: str

    # images
    def put_image(
        self, data: bytes, info: ImageInfo, label: str, source: dict[str, Any] | None = None,
        split_group: str | None = None,
    ) -> PutResult: ...
    def put_images(self, items: Sequence[ImagePut]) -> list[PutResult]: ...
    def add_label(self, key: str, label: str, source: dict[str, Any] | None = None) -> bool: ...
    def has_image(self, key: str) -> bool: ...
    def get_many(self, keys: list[str]) -> dict[str, bytes]: ...
    def get_meta(self, key: str) -> ImageMeta | None: ...
    def keys(
        self, label: str | None = None, split: str | None = None, include_excluded: bool = False
    ) -> list[str]: ...
    def sample(
        self, label: str, n: int, split: str | None = None, rng: random.Random | None = None
    ) -> list[str]: ...
    def count(
        self, label: str | None = None, split: str | None = None, include_excluded: bool = False
    ) -> int: ...
    def labels(self) -> list[str]: ...
    def phashes(self, label: str) -> list[tuple[str, str]]: ...
    def mark(self, key: str, *, excluded: bool | None = None, ambiguous: bool | None = None) -> None: ...
    def stats(self) -> dict[str, Any]: ...

    # attempts
    def create_attempt(self, doc: dict[str, Any]) -> str: ...
    def update_attempt(self, attempt_id: str, **fields: Any) -> dict[str, Any]: ...
    def get_attempt(self, attempt_id: str) -> dict[str, Any] | None: ...
    def find_attempts(self, model_name: str) -> list[dict[str, Any]]: ...
    def list_attempts(self) -> list[dict[str, Any]]: ...
    def delete_attempt(self, attempt_id: str) -> bool: ...

    def setup(self) -> list[str]: ...
    def close(self) -> None: ...


def open_store(url: str | None = None) -> ImageStore:
    """sqlite:///PATH (default from SERPTRAIN_STORE) or couchbase(s)://HOST."""
    if url is None:
        from models.settings import load_settings

        url = load_settings().store
    if url.startswith("sqlite://"):
        from store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("couchbase://", "couchbases://")):
        from store.couchbase import CouchbaseStore

        return CouchbaseStore.from_url(url)
    raise StoreError(f"SERPTRAIN_STORE: expected sqlite:///PATH or couchbase://HOST, found {url!r}")
