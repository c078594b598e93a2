"""What only the Couchbase backend has: its layout, CAS under contention, the access pattern of sampling,
and the fidelity of the SDK stand-in it is tested against."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import couchbase.subdocument as SD
import pytest
from couchbase import exceptions as cbx
from couchbase.options import GetOptions, MutateInOptions, ReplaceOptions
from couchbase.transcoder import RawBinaryTranscoder

from models.images import inspect_image
from store.base import ImagePut, StoreError
from store.couchbase import CouchbaseStore
from store.sqlite import SQLiteStore
from tests.fixtures import fake_couchbase
from tests.fixtures.fake_couchbase import FakeCluster
from tests.fixtures.tiny_images import tiny_png


@pytest.fixture
def cluster() -> FakeCluster:
    cluster = FakeCluster(buckets=["serptrain"])
    CouchbaseStore(cluster, check_layout=False).setup()
    return cluster


def items(label: str, indexes: range) -> list[ImagePut]:
    out = []
    for i in indexes:
        data = tiny_png(i, "cb", side=16)
        out.append(ImagePut(data, inspect_image(data)[0], label))
    return out


def test_layout_bytes_raw_meta_json_index_by_label(cluster: FakeCluster) -> None:
    store = CouchbaseStore(cluster)
    item = items("cat", range(1))[0]
    key = store.put_images([item])[0].key
    bucket = cluster.bucket("serptrain")
    assert bucket.raw("images", "blobs", key) == item.data  # the bytes themselves: no JSON, no base64
    meta = bucket.raw("images", "meta", key)
    assert meta["type"] == "image" and meta["labels"] == ["cat"] and "data" not in meta
    chunk = next(v for k, v in bucket._data["images"]["meta"].items() if k.startswith("label::cat::"))
    assert chunk  # the per-label index document exists
    assert bucket.raw("images", "meta", "label::cat")["version"] >= 1
    assert set(bucket._data) >= {"images", "training"} and set(bucket._data["training"]) == {"attempts"}
    names = {n for spec in bucket._indexes.values() for n in spec}
    assert names == {"meta_labels_split", "attempts_model_created"}


def test_setup_is_idempotent_and_creates_a_missing_bucket() -> None:
    cluster = FakeCluster()
    with pytest.raises(StoreError, match="store setup"):
        CouchbaseStore(cluster).count("cat")
    first = CouchbaseStore(cluster, check_layout=False).setup()
    assert "bucket serptrain: created (256 MB)" in first and "collection images.blobs: created" in first
    second = CouchbaseStore(cluster).setup()
    assert "bucket serptrain: present" in second and "collection training.attempts: present" in second
    assert not any(line.endswith(": created") for line in second)
    assert CouchbaseStore(cluster).count("cat") == 0


def test_a_bucket_without_the_collections_is_reported() -> None:
    with pytest.raises(StoreError, match=r"lacks images\.meta, images\.blobs, training\.attempts"):
        CouchbaseStore(FakeCluster(buckets=["serptrain"])).labels()


def test_concurrent_label_updates_retry_on_cas(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer changes the image between our read and our write: our replace must not win blindly."""
    store, rival = CouchbaseStore(cluster), CouchbaseStore(cluster)
    key = store.put_images(items("cat", range(1)))[0].key
    real_get = fake_couchbase.FakeCollection.get
    interfered = []

    def get_then_rival_writes(self, doc_key, *opts, **kwargs):  # noqa: ANN001, ANN202
        result = real_get(self, doc_key, *opts, **kwargs)
        if doc_key == key and not interfered:
            interfered.append(True)
            rival.add_label(key, "dog")  # bumps the CAS that `result` carries
        return result

    monkeypatch.setattr(fake_couchbase.FakeCollection, "get", get_then_rival_writes)
    store.add_label(key, "fox")
    assert interfered and store.get_meta(key).labels == ["cat", "dog", "fox"]
    assert store.stats()["ambiguous"] == 1
    assert store.keys("fox", include_excluded=True) == [key] and store.keys("fox") == []


def test_sampling_reads_one_small_document_per_call(cluster: FakeCluster,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = CouchbaseStore(cluster)
    store.put_images(items("cat", range(300)))
    store.sample("cat", 8)  # the first call loads the label's chunks
    calls: Counter[str] = Counter()
    for name in ("get", "get_multi", "lookup_in", "mutate_in"):
        real = getattr(fake_couchbase.FakeCollection, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):  # noqa: ANN001, ANN202
            calls[_name] += 1
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(fake_couchbase.FakeCollection, name, counted)
    for _ in range(10):
        assert len(store.sample("cat", 8, split="train")) == 8
    assert calls == Counter({"lookup_in": 10})  # the label's version, nothing that grows with the label


def test_both_backends_list_and_sample_alike(cluster: FakeCluster, tmp_path) -> None:  # noqa: ANN001
    sqlite, couch = SQLiteStore(f"sqlite:///{tmp_path / 's.db'}"), CouchbaseStore(cluster)
    for store in (sqlite, couch):
        store.put_images(items("cat", range(40)) + items("dog", range(30, 50)))
        store.mark(store.keys("cat")[3], excluded=True)
    for label in ("cat", "dog"):
        assert sqlite.keys(label) == couch.keys(label)
        drawn = sqlite.sample(label, 5, "train", random.Random(3))
        assert drawn == couch.sample(label, 5, "train", random.Random(3))
    a, b = sqlite.stats(), couch.stats()
    assert {k: v for k, v in a.items() if k != "store"} == {k: v for k, v in b.items() if k != "store"}


# the stand-in keeps the SDK's semantics -------------------------------------------------------------
@pytest.fixture
def coll(cluster: FakeCluster) -> Iterator:
    yield cluster.bucket("serptrain").scope("images").collection("meta")


def test_standin_transcoders_keep_binary_and_json_apart(coll) -> None:  # noqa: ANN001
    coll.upsert("bin", b"\x89PNG", transcoder=RawBinaryTranscoder())
    coll.upsert("doc", {"a": 1})
    assert coll.get("bin", GetOptions(transcoder=RawBinaryTranscoder())).value == b"\x89PNG"
    with pytest.raises(cbx.ValueFormatException):
        coll.get("bin")
    with pytest.raises(cbx.ValueFormatException):
        coll.get("doc", GetOptions(transcoder=RawBinaryTranscoder()))
    with pytest.raises(cbx.DocumentNotJsonException):
        coll.mutate_in("bin", [SD.upsert("a", 1)])


def test_standin_cas_and_existence(coll) -> None:  # noqa: ANN001
    cas = coll.insert("k", {"n": 1}).cas
    with pytest.raises(cbx.DocumentExistsException):
        coll.insert("k", {"n": 2})
    assert coll.replace("k", {"n": 2}, ReplaceOptions(cas=cas)).cas != cas
    with pytest.raises(cbx.CASMismatchException):
        coll.replace("k", {"n": 3}, ReplaceOptions(cas=cas))
    with pytest.raises(cbx.DocumentNotFoundException):
        coll.get("missing")
    multi = coll.get_multi(["k", "missing"])
    assert set(multi.results) == {"k"}
    assert isinstance(multi.exceptions["missing"], cbx.DocumentNotFoundException)


def test_standin_mutate_in_is_all_or_nothing(coll) -> None:  # noqa: ANN001
    coll.upsert("d", {"names": ["a"], "n": 1})
    with pytest.raises(cbx.PathExistsException):
        coll.mutate_in("d", [SD.increment("n", 5), SD.array_addunique("names", "a")])
    assert coll.get("d").content_as[dict] == {"names": ["a"], "n": 1}
    result = coll.mutate_in("d", [SD.decrement("n", 3), SD.upsert("x.`y.z`", True, create_parents=True)])
    assert result.content_as[int](0) == -2 and coll.get("d").content_as[dict]["x"] == {"y.z": True}
    with pytest.raises(cbx.InvalidArgumentException):
        coll.mutate_in("d", [SD.upsert(f"k{i}", i) for i in range(17)])
    with pytest.raises(cbx.DocumentNotFoundException):
        coll.mutate_in("new", [SD.upsert("a", 1)])
    coll.mutate_in("new", [SD.upsert("a", 1)], MutateInOptions(store_semantics=SD.StoreSemantics.UPSERT))
    looked = coll.lookup_in("new", [SD.get("a"), SD.exists("b"), SD.get("b")])
    assert looked.content_as[int](0) == 1 and looked.exists(1) is False
    with pytest.raises(cbx.PathNotFoundException):
        looked.content_as[int](2)


def test_workers_reconnect_instead_of_sharing_a_connection(cluster: FakeCluster,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """DataLoader workers: a store sent to a worker (pickled by multiprocessing through __getstate__ and
    __setstate__) connects anew from the URL; a forked one reconnects on first use."""
    connects = []
    monkeypatch.setattr("store.couchbase.connect", lambda *a: connects.append(a) or cluster)
    monkeypatch.setenv("SERPTRAIN_COUCHBASE_USER", "worker")
    monkeypatch.setenv("SERPTRAIN_COUCHBASE_PASSWORD", "pw")
    store = CouchbaseStore.from_url("couchbase://db.example/serptrain")
    key = store.put_images(items("cat", range(2)))[0].key
    state = store.__getstate__()
    copy = CouchbaseStore.__new__(CouchbaseStore)
    copy.__setstate__(state)
    assert len(connects) == 2 and copy.keys("cat") == store.keys("cat") and copy.url == store.url
    assert "pw" not in repr(state)
    store._pid = -1  # as seen from a forked child
    assert store.has_image(key) and len(connects) == 3
    with pytest.raises(TypeError, match="handed-in cluster"):
        CouchbaseStore(cluster).__getstate__()
