"""Two processes ingest overlapping images into one SQLite file at the same time: each image ends up
stored exactly once, with both processes' labels and sources, and neither process sees an error."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

from models.images import inspect_image
from store.base import ImagePut
from store.sqlite import SQLiteStore
from tests.fixtures.tiny_images import tiny_png

WORKER_RANGES = {"a": range(0, 80), "b": range(40, 120)}  # images 40..79 are ingested by both


def ingest(url: str, worker: str, start: mp.synchronize.Event, out: mp.Queue) -> None:
    try:
        store = SQLiteStore(url)
        start.wait(10)
        created = []
        for i in WORKER_RANGES[worker]:
            data = tiny_png(i, "concurrency", side=16)
            info, _ = inspect_image(data)
            if i % 2:  # half one by one, half in small bulk transactions: both paths contend
                created.append(store.put_image(data, info, "cat", {"engine": worker, "position": i}).created)
            else:
                item = ImagePut(data, info, "cat", {"engine": worker, "position": i})
                created.extend(r.created for r in store.put_images([item]))
        out.put((worker, sum(created), None))
    except Exception as exc:  # reported to the test, which fails with it
        out.put((worker, 0, f"{type(exc).__name__}: {exc}"))


def test_two_processes_ingesting_overlapping_images(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    SQLiteStore(url).close()  # the schema exists before the race starts, as after `store setup`
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=ingest, args=(url, w, start, out)) for w in WORKER_RANGES]
    for p in procs:
        p.start()
    start.set()
    reports = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert [error for _, _, error in reports] == [None, None]
    assert sum(n for _, n, _ in reports) == 120  # every image created by exactly one of them
    store = SQLiteStore(url)
    assert store.count("cat") == 120 and len(set(store.keys("cat"))) == 120
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT key) FROM images").fetchone() == (120, 120)
        assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (120,)
    shared = store.get_meta(tiny_key(40))
    assert {s["engine"] for s in shared.sources} == {"a", "b"} and not shared.ambiguous


def tiny_key(i: int) -> str:
    return inspect_image(tiny_png(i, "concurrency", side=16))[0].key


def test_batches_stay_right_when_another_process_renumbers_rows(tmp_path: Path) -> None:
    """get_many reads by the rowids sample() remembered; rows renumbered elsewhere (VACUUM) are caught."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    reader = SQLiteStore(url)
    datas = [tiny_png(i, "rowid", side=16) for i in range(20)]
    keys = [r.key for r in reader.put_images([ImagePut(d, inspect_image(d)[0], "cat") for d in datas])]
    assert sorted(reader.sample("cat", 50)) == sorted(keys)  # the reader now knows their rowids
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        old = [r[0] for r in conn.execute("SELECT rowid FROM blobs")]
        conn.execute("UPDATE blobs SET rowid = rowid + 1000")
        conn.executemany("INSERT INTO blobs (rowid, key, data) VALUES (?, ?, ?)",
                         [(rowid, f"decoy{rowid}", b"wrong") for rowid in old])
    assert reader.get_many(keys) == dict(zip(keys, datas, strict=True))
