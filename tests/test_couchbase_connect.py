"""The real couchbase SDK pointed at a loopback port where nothing listens: a StoreError that names the
URL, within the configured timeout, and no traceback-worthy SDK exception."""

from __future__ import annotations

import socket
import time

import pytest

from store.base import StoreError, open_store
from store.couchbase import CouchbaseStore


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on leaving: nothing listens there


def test_unreachable_cluster_names_the_url_within_the_timeout() -> None:
    url = f"couchbase://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        CouchbaseStore.from_url(url, user="someone", password="secret", timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert url in str(caught.value) and "within 1s" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert elapsed < 8, elapsed


def test_open_store_reads_url_and_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"couchbases://127.0.0.1:{closed_port()}/images_bucket"
    monkeypatch.setenv("SERPTRAIN_STORE", url)
    monkeypatch.setenv("SERPTRAIN_COUCHBASE_USER", "someone")
    monkeypatch.setenv("SERPTRAIN_COUCHBASE_PASSWORD", "secret")
    monkeypatch.setenv("SERPTRAIN_COUCHBASE_TIMEOUT_S", "1")
    with pytest.raises(StoreError, match="cannot reach Couchbase") as caught:
        open_store()
    assert url in str(caught.value) and "secret" not in str(caught.value)


def test_missing_credentials_are_reported_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERPTRAIN_COUCHBASE_USER", raising=False)
    monkeypatch.delenv("SERPTRAIN_COUCHBASE_PASSWORD", raising=False)
    started = time.monotonic()
    with pytest.raises(StoreError, match="SERPTRAIN_COUCHBASE_USER"):
        CouchbaseStore.from_url("couchbase://127.0.0.1:1")
    assert time.monotonic() - started < 1


def test_a_url_without_host_is_refused() -> None:
    with pytest.raises(StoreError, match="couchbase://HOST"):
        CouchbaseStore.from_url("couchbase:///nohost", user="u", password="p", timeout_s=1)
