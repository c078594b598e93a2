"""The store contract. Every backend passes the same tests (tests/test_store_contract.py).

Images are keyed by the SHA-256 of their bytes; writes are idempotent. The split of an image is a pure
function of its split group's key (its own key unless it is a near duplicate of an earlier image), so it
never changes as the dataset grows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
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


@dataclass
class PutResult:
    key: str
    created: bool  # False: these exact bytes were already stored
    ambiguous: bool  # the image now carries more than one label
    split: str


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
    url: str

    # images
    def put_image(
        self, data: bytes, info: ImageInfo, label: str, source: dict[str, Any] | None = None,
        split_group: str | None = None,
    ) -> PutResult: ...
    def add_label(self, key: str, label: str, source: dict[str, Any] | None = None) -> bool: ...
    def has_image(self, key: str) -> bool: ...
    def get_many(self, keys: list[str]) -> dict[str, bytes]: ...
    def get_meta(self, key: str) -> ImageMeta | None: ...
    def keys(self, label: str | None = None, split: str | None = None, include_excluded: bool = False) -> list[str]: ...
    def sample(self, label: str, n: int, split: str | None = None, rng: random.Random | None = None) -> list[str]: ...
    def count(self, label: str | None = None, split: str | None = None, include_excluded: bool = False) -> int: ...
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
