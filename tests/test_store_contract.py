"""The store contract, run against every backend: SQLite always, Couchbase through the SDK stand-in always,
a real Couchbase cluster when SERPTRAIN_COUCHBASE_URL (+ _USER, _PASSWORD) is set.

Every test makes its own images (salted bytes) and labels (a per-test prefix), so the tests also hold on a
real bucket that earlier runs have left data in; global figures are checked as differences.
"""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from models.images import inspect_image
from store.base import SPLITS, ImagePut, ImageStore, StoreError, split_of
from store.couchbase import CouchbaseStore
from store.sqlite import SQLiteStore
from tests.fixtures.fake_couchbase import FakeCluster
from tests.fixtures.tiny_images import tiny_png

REAL_URL = os.environ.get("SERPTRAIN_COUCHBASE_URL")
BACKENDS = ["sqlite", "couchbase-standin",
            pytest.param("couchbase-real", marks=pytest.mark.skipif(
                not REAL_URL, reason="SERPTRAIN_COUCHBASE_URL not set: no real Couchbase cluster"))]


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], ImageStore]]:
    """Opens a handle on one backend; each call is another handle (another process, in effect)."""
    handles: list[ImageStore] = []
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"

        def make() -> ImageStore:
            return SQLiteStore(url)
    elif request.param == "couchbase-standin":
        cluster = FakeCluster(buckets=["serptrain"])
        CouchbaseStore(cluster, "serptrain", check_layout=False).setup()

        def make() -> ImageStore:
            return CouchbaseStore(cluster, "serptrain")
    else:
        bucket = os.environ.get("SERPTRAIN_COUCHBASE_BUCKET", "serptrain_test")
        CouchbaseStore.from_url(REAL_URL, bucket=bucket, check_layout=False).setup()

        def make() -> ImageStore:
            return CouchbaseStore.from_url(REAL_URL, bucket=bucket)

    def opened() -> ImageStore:
        handles.append(make())
        return handles[-1]

    yield opened
    for handle in handles:
        handle.close()


@pytest.fixture
def store(opener: Callable[[], ImageStore]) -> ImageStore:
    return opener()


@pytest.fixture
def names() -> Callable[[str], str]:
    prefix = uuid.uuid4().hex[:8]
    return lambda name: f"{prefix}-{name}"


SALT = uuid.uuid4().hex


def put(store: ImageStore, index: int, label: str, **kwargs: object):  # noqa: ANN201
    data = tiny_png(index, SALT, side=16)
    info, _ = inspect_image(data)
    return store.put_image(data, info, label, **kwargs), data


def fill(store: ImageStore, label: str, n: int, start: int = 0) -> list[str]:
    items = []
    for i in range(start, start + n):
        data = tiny_png(i, SALT, side=16)
        items.append(ImagePut(data, inspect_image(data)[0], label, {"engine": "test", "position": i}))
    return [r.key for r in store.put_images(items)]


def test_put_is_idempotent_and_keyed_by_content(store: ImageStore, names: Callable[[str], str]) -> None:
    cat = names("cat")
    first, data = put(store, 1, cat, source={"engine": "google", "query": "cat", "position": 3})
    again, _ = put(store, 1, cat, source={"engine": "google", "query": "cat", "position": 3})
    assert first.created and not again.created
    assert first.key == again.key == inspect_image(data)[0].key
    assert first.split == again.split == split_of(first.key)
    assert store.has_image(first.key) and not store.has_image("0" * 64)
    assert store.get_many([first.key, "0" * 64]) == {first.key: data}
    meta = store.get_meta(first.key)
    assert meta is not None and store.get_meta("0" * 64) is None
    facts = (meta.labels, meta.width, meta.height, meta.format, meta.nbytes)
    assert facts == ([cat], 16, 16, "PNG", len(data))
    assert meta.sources == [{"engine": "google", "query": "cat", "position": 3, "label": cat}]
    assert not meta.excluded and not meta.ambiguous and meta.added_at
    assert store.keys(cat) == [first.key]


def test_split_follows_the_group_and_never_changes(store: ImageStore, names: Callable[[str], str]) -> None:
    group = next(f"{i:08x}" + "0" * 56 for i in range(1000) if split_of(f"{i:08x}") == "test")
    result, _ = put(store, 2, names("dog"), split_group=group)
    assert result.split == "test"
    other_group = next(f"{i:08x}" + "0" * 56 for i in range(1000) if split_of(f"{i:08x}") == "train")
    again, _ = put(store, 2, names("dog"), split_group=other_group)
    assert again.split == "test" and store.get_meta(result.key).split == "test"


def test_keys_and_counts_by_label_and_split(store: ImageStore, names: Callable[[str], str]) -> None:
    cat, dog = names("cat"), names("dog")
    cats, dogs = fill(store, cat, 30), fill(store, dog, 12, start=100)
    assert store.keys(cat) == sorted(cats) and store.keys(dog) == sorted(dogs)
    for split in SPLITS:
        expected = sorted(k for k in cats if split_of(k) == split)
        assert store.keys(cat, split) == expected
        assert store.count(cat, split) == len(expected)
    assert store.count(cat) == 30 and store.count(dog) == 12
    assert {cat, dog} <= set(store.labels())
    assert set(cats) | set(dogs) <= set(store.keys())
    assert store.keys(names("nobody")) == [] and store.count(names("nobody")) == 0
    assert store.keys(cat, "holdout") == []


def test_bulk_put_matches_single_puts(store: ImageStore, names: Callable[[str], str]) -> None:
    cat = names("cat")
    data = [tiny_png(i, SALT, side=16) for i in range(300, 306)]
    items = [ImagePut(d, inspect_image(d)[0], cat) for d in data + data[:2]]  # two repeats in one batch
    results = store.put_images(items)
    assert [r.created for r in results] == [True] * 6 + [False, False]
    assert store.count(cat) == 6
    expected = {r.key: d for r, d in zip(results, data, strict=False)}
    assert store.get_many([r.key for r in results[:6]]) == expected


def test_second_label_makes_the_image_ambiguous(store: ImageStore, names: Callable[[str], str]) -> None:
    cat, dog = names("cat"), names("dog")
    before = store.stats()["ambiguous"]
    first, _ = put(store, 3, cat)
    second, _ = put(store, 3, dog, source={"engine": "bing"})
    assert not first.ambiguous and second.ambiguous and not second.created
    meta = store.get_meta(first.key)
    assert meta.ambiguous and meta.labels == sorted([cat, dog])
    assert meta.sources == [{"engine": "bing", "label": dog}]
    assert store.keys(cat) == [] and store.keys(dog) == [] and store.sample(cat, 5) == []
    assert store.keys(cat, include_excluded=True) == [first.key]
    assert store.count(dog, include_excluded=True) == 1
    assert store.stats()["ambiguous"] == before + 1
    store.mark(first.key, ambiguous=False)  # a person decided: it may be used again
    assert store.keys(cat) == [first.key] == store.keys(dog)
    put(store, 3, dog)  # re-ingesting does not undo that decision
    assert store.keys(dog) == [first.key]


def test_add_label(store: ImageStore, names: Callable[[str], str]) -> None:
    cat, dog = names("cat"), names("dog")
    first, _ = put(store, 4, cat)
    assert store.add_label(first.key, dog, {"engine": "manual"}) is True
    assert store.get_meta(first.key).labels == sorted([cat, dog])
    assert store.keys(dog, include_excluded=True) == [first.key]
    with pytest.raises(KeyError):
        store.add_label("f" * 64, cat)


def test_mark_excluded_hides_and_restores(store: ImageStore, names: Callable[[str], str]) -> None:
    cat = names("cat")
    keys = fill(store, cat, 10, start=200)
    before = store.stats()["excluded"]
    store.mark(keys[0], excluded=True)
    assert keys[0] not in store.keys(cat) and keys[0] in store.keys(cat, include_excluded=True)
    assert store.count(cat) == 9 and store.count(cat, include_excluded=True) == 10
    assert keys[0] not in store.sample(cat, 100)
    assert store.stats()["excluded"] == before + 1 and store.get_meta(keys[0]).excluded
    store.mark(keys[0], excluded=True)  # no double counting
    assert store.stats()["excluded"] == before + 1
    store.mark(keys[0], excluded=False)
    assert store.count(cat) == 10 and store.stats()["excluded"] == before
    store.mark("e" * 64, excluded=True)  # unknown key: nothing happens


def test_sample_is_uniform_without_replacement(store: ImageStore, names: Callable[[str], str]) -> None:
    cat, dog = names("cat"), names("dog")
    keys = fill(store, cat, 8, start=400)
    fill(store, dog, 5, start=500)
    rng = random.Random(7)
    draws = Counter(k for _ in range(2000) for k in store.sample(cat, 2, rng=rng))
    assert set(draws) == set(keys)
    assert all(abs(n - 500) < 120 for n in draws.values()), draws  # 2000×2/8 = 500 each
    one = store.sample(cat, 3, rng=random.Random(1))
    assert len(set(one)) == 3 and one == store.sample(cat, 3, rng=random.Random(1))
    assert sorted(store.sample(cat, 100)) == sorted(keys)
    train = [k for k in keys if split_of(k) == "train"]
    assert sorted(store.sample(cat, 100, split="train")) == sorted(train)


def test_sample_sees_writes_of_another_handle(opener: Callable[[], ImageStore],
                                              names: Callable[[str], str]) -> None:
    reader, writer = opener(), opener()
    cat = names("cat")
    fill(writer, cat, 3, start=600)
    assert len(reader.sample(cat, 10)) == 3  # now cached by the reader
    more = fill(writer, cat, 2, start=700)
    assert set(more) <= set(reader.sample(cat, 10)) and reader.count(cat) == 5
    writer.mark(more[0], excluded=True)
    assert more[0] not in reader.sample(cat, 10)


def test_phashes_cover_every_image_of_the_label(store: ImageStore, names: Callable[[str], str]) -> None:
    cat = names("cat")
    keys = fill(store, cat, 5, start=800)
    store.mark(keys[1], excluded=True)
    assert sorted(store.phashes(cat)) == sorted((k, store.get_meta(k).phash) for k in keys)
    assert store.phashes(names("nobody")) == []


def test_get_many_spans_batches(store: ImageStore, names: Callable[[str], str]) -> None:
    keys = fill(store, names("cat"), 600, start=1000)
    got = store.get_many(keys + ["0" * 64])
    assert set(got) == set(keys) and all(isinstance(v, bytes) and v[:4] == b"\x89PNG" for v in got.values())


def test_stats_counts(store: ImageStore, names: Callable[[str], str]) -> None:
    cat = names("cat")
    before = store.stats()
    keys = fill(store, cat, 7, start=1700)
    after = store.stats()
    assert after["images"] == before["images"] + 7
    assert after["bytes"] == before["bytes"] + sum(len(v) for v in store.get_many(keys).values())
    assert after["labels"][cat] == {s: store.count(cat, s) for s in SPLITS}
    assert sum(after["labels"][cat].values()) == 7 and after["store"] == store.url


def test_attempt_lifecycle(store: ImageStore, names: Callable[[str], str]) -> None:
    model = names("model")
    first = store.create_attempt({"model_name": model, "command": {"epochs": 2}, "where": Path("/x")})
    second = store.create_attempt({"model_name": model})
    other = store.create_attempt({"model_name": names("other")})
    doc = store.get_attempt(first)
    assert doc["status"] == "validating" and doc["command"] == {"epochs": 2} and doc["where"] == "/x"
    assert doc["id"] == first and doc["created_at"] and "type" not in doc
    updated = store.update_attempt(first, status="training", epochs=[{"epoch": 1, "loss": 0.5}])
    assert updated["status"] == "training" and updated["command"] == {"epochs": 2}
    assert store.get_attempt(first) == updated
    assert [a["id"] for a in store.find_attempts(model)] == [first, second]
    assert {first, second, other} <= {a["id"] for a in store.list_attempts()}
    assert store.delete_attempt(second) is True and store.delete_attempt(second) is False
    assert store.get_attempt(second) is None
    assert [a["id"] for a in store.find_attempts(model)] == [first]
    assert store.find_attempts(names("nobody")) == []


def test_attempt_mistakes_are_refused(store: ImageStore, names: Callable[[str], str]) -> None:
    first = store.create_attempt({"model_name": names("m"), "id": names("fixed-id")})
    with pytest.raises(StoreError, match="already exists"):
        store.create_attempt({"model_name": names("m"), "id": first})
    with pytest.raises(StoreError, match="status"):
        store.update_attempt(first, status="finished")
    with pytest.raises(StoreError, match="model_name"):
        store.create_attempt({"status": "training"})
    with pytest.raises(KeyError):
        store.update_attempt(names("missing"), status="failed")
    assert store.get_attempt(first)["status"] == "validating"
