"""Couchbase: connecting (with a clear error when the cluster is not there) and the bucket layout.

`serptrain store setup` runs `ensure_layout`: bucket, scopes, collections and SQL++ indexes, each created
only when missing, so running it twice changes nothing. The store itself reads and writes by key only;
the indexes serve people who query the data with SQL++ (the Couchbase UI, notebooks).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from couchbase import exceptions as cbx

from store.base import StoreError

LAYOUT = {"images": ("meta", "blobs"), "training": ("attempts",)}
# (scope, collection, index name, index keys, partial-index condition)
INDEXES = [
    ("images", "meta", "meta_labels_split",
     ["DISTINCT ARRAY l FOR l IN labels END", "split", "excluded", "ambiguous"], 'type = "image"'),
    ("training", "attempts", "attempts_model_created", ["model_name", "created_at"], 'type = "attempt"'),
]
BUCKET_RAM_MB = 256  # only used when setup creates the bucket; resize it in the Couchbase UI when it grows
_MISSING_BUCKET = (cbx.BucketNotFoundException, cbx.BucketDoesNotExistException)


def guarded(method: Callable) -> Callable:
    """SDK failures the store does not handle itself become a StoreError naming the store."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except cbx.CouchbaseException as exc:
            raise StoreError(f"{self.url}: {type(exc).__name__}: {exc}") from None

    return wrapper


def split_url(url: str) -> tuple[str, str | None]:
    """'couchbase://host/bucket?opt=1' → ('couchbase://host?opt=1', 'bucket'); the SDK takes no path."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise StoreError(f"SERPTRAIN_STORE: expected couchbase://HOST or couchbases://HOST, found {url!r}")
    bucket = parts.path.strip("/") or None
    return urlunsplit((parts.scheme, parts.netloc, "", parts.query, "")), bucket


def connect(url: str, user: str, password: str, timeout_s: float) -> Any:
    """A connected couchbase.cluster.Cluster, or StoreError naming the URL within about timeout_s."""
    from couchbase.auth import PasswordAuthenticator
    from couchbase.cluster import Cluster
    from couchbase.options import ClusterOptions, ClusterTimeoutOptions

    if not user or not password:
        raise StoreError(f"{url}: set SERPTRAIN_COUCHBASE_USER and SERPTRAIN_COUCHBASE_PASSWORD "
                         "(or pass user/password) to use a Couchbase store")
    connstr, _ = split_url(url)
    limit = timedelta(seconds=timeout_s)
    options = ClusterOptions(
        PasswordAuthenticator(user, password),
        timeout_options=ClusterTimeoutOptions(connect_timeout=limit, bootstrap_timeout=limit),
    )
    try:
        return Cluster(connstr, options)
    except cbx.AuthenticationException:
        raise StoreError(f"{url}: Couchbase refused the credentials of user {user!r}") from None
    except cbx.CouchbaseException as exc:
        raise StoreError(f"{url}: cannot reach Couchbase within {timeout_s:g}s "
                         f"({type(exc).__name__}: {_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = str(exc)
    marker = "message="
    if marker in text:  # the SDK's repr-like text: keep its message, drop the C source location
        text = text.split(marker, 1)[1].split(", C Source", 1)[0].rstrip(">)")
    return text[:200]


def missing_collections(bucket: Any) -> list[str]:
    try:
        scopes = {s.name: {c.name for c in s.collections} for s in bucket.collections().get_all_scopes()}
    except _MISSING_BUCKET:
        raise
    except cbx.CouchbaseException:
        return []  # a data-only role may not list collections: the first read or write says what is wrong
    return [f"{scope}.{coll}" for scope, colls in LAYOUT.items() for coll in colls
            if coll not in scopes.get(scope, set())]


def open_bucket(cluster: Any, bucket_name: str, url: str, check: bool = True) -> Any:
    try:
        bucket = cluster.bucket(bucket_name)
        missing = missing_collections(bucket) if check else []
    except _MISSING_BUCKET:
        raise StoreError(f"{url}: no bucket {bucket_name!r}; run `serptrain store setup`") from None
    except cbx.CouchbaseException as exc:
        raise StoreError(f"{url}: cannot open bucket {bucket_name!r} ({_short(exc)})") from None
    if missing:
        raise StoreError(f"{url}: bucket {bucket_name!r} lacks {', '.join(missing)}; "
                         "run `serptrain store setup`")
    return bucket


def ensure_layout(cluster: Any, bucket_name: str, url: str, wait_s: float = 30.0) -> list[str]:
    """Create what is missing; returns one line per thing, saying whether it was created or already there."""
    from couchbase.management.buckets import BucketType, CreateBucketSettings
    from couchbase.management.options import CreateQueryIndexOptions

    report: list[str] = []
    try:
        cluster.buckets().get_bucket(bucket_name)
        report.append(f"bucket {bucket_name}: present")
    except _MISSING_BUCKET:
        cluster.buckets().create_bucket(CreateBucketSettings(
            name=bucket_name, bucket_type=BucketType.COUCHBASE, ram_quota_mb=BUCKET_RAM_MB))
        report.append(f"bucket {bucket_name}: created ({BUCKET_RAM_MB} MB)")
    bucket = _retry(lambda: open_bucket(cluster, bucket_name, url, check=False), wait_s)
    manager = bucket.collections()
    scopes = {s.name: {c.name for c in s.collections} for s in manager.get_all_scopes()}
    for scope, collections in LAYOUT.items():
        if scope not in scopes:
            _ignore_exists(lambda s=scope: manager.create_scope(s))
            report.append(f"scope {scope}: created")
        for coll in collections:
            if coll in scopes.get(scope, set()):
                report.append(f"collection {scope}.{coll}: present")
                continue
            _retry(lambda s=scope, c=coll: _ignore_exists(lambda: manager.create_collection(s, c)), wait_s)
            report.append(f"collection {scope}.{coll}: created")
    for scope, coll, name, keys, condition in INDEXES:
        indexes = bucket.scope(scope).collection(coll).query_indexes()
        options = CreateQueryIndexOptions(ignore_if_exists=True, condition=condition)
        try:
            _retry(lambda m=indexes, n=name, k=keys, o=options: m.create_index(n, k, o), wait_s)
            report.append(f"index {name} on {scope}.{coll}: ready")
        except cbx.CouchbaseException as exc:  # no query service: the store works by key without it
            report.append(f"index {name} on {scope}.{coll}: skipped ({_short(exc)})")
    return report


def _ignore_exists(action: Any) -> None:
    try:
        action()
    except (cbx.ScopeAlreadyExistsException, cbx.CollectionAlreadyExistsException):
        pass  # another setup got there first: the goal is reached either way


def _retry(action: Any, wait_s: float) -> Any:
    """A bucket or collection just created takes a moment to be usable everywhere in the cluster."""
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            return action()
        except (StoreError, cbx.CouchbaseException):
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
