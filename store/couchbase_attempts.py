"""Training attempts in Couchbase: `training.attempts`, one document per attempt, plus `_attempt_index`
({"ids": {id: {model_name, created_at}}}) so that listing and finding attempts are key-value reads too."""

from __future__ import annotations

from typing import Any

import couchbase.subdocument as SD
from couchbase import exceptions as cbx
from couchbase.options import MutateInOptions, ReplaceOptions

from store.base import StoreError, attempt_order, merge_attempt, new_attempt
from store.couchbase_index import escape
from store.couchbase_layout import guarded

ATTEMPT_INDEX = "_attempt_index"
CAS_RETRIES = 64
_UPSERT = MutateInOptions(store_semantics=SD.StoreSemantics.UPSERT)


class CouchbaseAttempts:
    """Mixed into CouchbaseStore, which provides `url` and the `attempts` collection."""

    url: str
    attempts: Any

    @guarded
    def create_attempt(self, doc: dict[str, Any]) -> str:
        attempt = new_attempt(doc) | {"type": "attempt"}
        try:
            self.attempts.insert(attempt["id"], attempt)
        except cbx.DocumentExistsException:
            raise StoreError(f"{self.url}: attempt {attempt['id']!r} already exists") from None
        self._index_attempt(attempt)
        return attempt["id"]

    def _index_attempt(self, attempt: dict[str, Any]) -> None:
        entry = {"model_name": attempt["model_name"], "created_at": attempt["created_at"]}
        self.attempts.mutate_in(ATTEMPT_INDEX, [SD.upsert("type", "attempt_index"),
                                                SD.upsert(f"ids.{escape(attempt['id'])}", entry,
                                                          create_parents=True)], _UPSERT)

    @guarded
    def update_attempt(self, attempt_id: str, **fields: Any) -> dict[str, Any]:
        """Raises KeyError for an unknown attempt."""
        for _ in range(CAS_RETRIES):
            try:
                got = self.attempts.get(attempt_id)
            except cbx.DocumentNotFoundException:
                raise KeyError(f"no attempt {attempt_id!r}") from None
            doc = merge_attempt(got.content_as[dict], fields)
            try:
                self.attempts.replace(attempt_id, doc, ReplaceOptions(cas=got.cas))
            except cbx.CasMismatchException:
                continue
            if "model_name" in fields:
                self._index_attempt(doc)
            return _public(doc)
        raise StoreError(f"{self.url}: attempt {attempt_id} kept changing under {CAS_RETRIES} updates")

    @guarded
    def get_attempt(self, attempt_id: str) -> dict[str, Any] | None:
        try:
            return _public(self.attempts.get(attempt_id).content_as[dict])
        except cbx.DocumentNotFoundException:
            return None

    def _attempts(self, model_name: str | None) -> list[dict[str, Any]]:
        try:
            ids = self.attempts.lookup_in(ATTEMPT_INDEX, [SD.get("ids")]).content_as[dict](0)
        except (cbx.DocumentNotFoundException, cbx.PathNotFoundException):
            return []
        wanted = [i for i, entry in ids.items() if model_name is None or entry["model_name"] == model_name]
        # an id whose document is gone (deleted between the two writes) is simply not listed
        found = self.attempts.get_multi(wanted) if wanted else None
        docs = [_public(r.content_as[dict]) for r in found.results.values()] if found else []
        return sorted(docs, key=attempt_order)

    @guarded
    def find_attempts(self, model_name: str) -> list[dict[str, Any]]:
        return self._attempts(model_name)

    @guarded
    def list_attempts(self) -> list[dict[str, Any]]:
        return self._attempts(None)

    @guarded
    def delete_attempt(self, attempt_id: str) -> bool:
        try:
            self.attempts.remove(attempt_id)
        except cbx.DocumentNotFoundException:
            return False
        try:
            self.attempts.mutate_in(ATTEMPT_INDEX, [SD.remove(f"ids.{escape(attempt_id)}")])
        except (cbx.DocumentNotFoundException, cbx.PathNotFoundException):
            pass
        return True


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """The attempt as the SQLite store returns it: without the document type marker."""
    return {k: v for k, v in doc.items() if k != "type"}
