"""Where images and training attempts live: one contract, SQLite (default) and Couchbase backends."""

from store.base import ImageStore, open_store, split_of

__all__ = ["ImageStore", "open_store", "split_of"]
