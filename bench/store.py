"""Does fetching a random training batch cost the same at 100,000 images as at 1,000?

For each backend, one store holds 1,000 tiny PNGs (two labels) and a second the same 1,000 plus 99,000
more; random training batches (sample per label + get_many) are timed on both, in alternating rounds so
that machine load hits both alike. Printed: per-batch time at each size and the ratio (goal ≤ 1.3),
images/s fetched, and the store operations one batch costs (the access pattern: the same count at both
sizes means no scan). "cold" evicts the CPU caches between batches, as the training step between two
fetches does; "hot" fetches back to back, where the whole 1,000-image store sits in the CPU cache. The
memory-floor line does the same random look-ups in a plain dict: what this machine's memory charges for
touching 64 random entries of a larger set, whatever the store. The Couchbase backend runs on the SDK
stand-in: its absolute speed is not Couchbase's, its operation count is.

    python bench/store.py [--small 1000] [--large 100000] [--batch 64] [--rounds 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# run as a script, this folder would come first on sys.path and `store` would be this file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from store.base import ImagePut, ImageStore  # noqa: E402
from store.couchbase import CouchbaseStore  # noqa: E402
from store.sqlite import SQLiteStore  # noqa: E402
from tests.fixtures import fake_couchbase  # noqa: E402
from tests.fixtures.tiny_images import tiny_info, tiny_png  # noqa: E402

LABELS = ("cat", "dog")
SCRATCH = np.zeros(64 << 20, dtype=np.uint8)  # larger than the CPU caches


def evict() -> None:
    np.add(SCRATCH, 1, out=SCRATCH)


def images(n: int) -> list[ImagePut]:
    out = []
    for i in range(n):
        data = tiny_png(i, "bench")
        out.append(ImagePut(data, tiny_info(data), LABELS[i % len(LABELS)]))
    return out


def fill(store: ImageStore, items: list[ImagePut], chunk: int = 2000) -> float:
    began = time.perf_counter()
    for lo in range(0, len(items), chunk):
        store.put_images(items[lo:lo + chunk])
    return len(items) / (time.perf_counter() - began)


def batch_fn(store: ImageStore, batch: int, rng: random.Random) -> Callable[[], None]:
    per_label = batch // len(LABELS)

    def one() -> None:
        keys = [k for label in LABELS for k in store.sample(label, per_label, "train", rng)]
        assert len(store.get_many(keys)) == len(keys) == batch
    return one


def dict_fn(blobs: dict[str, bytes], batch: int, rng: random.Random) -> Callable[[], None]:
    keys = [k for k in blobs]

    def one() -> None:
        assert len({k: blobs[k] for k in rng.sample(keys, batch)}) == batch
    return one


def side_by_side(small: Callable[[], None], large: Callable[[], None], rounds: int, per_round: int,
                 cold: bool) -> tuple[float, float]:
    """Median seconds per batch for each, measured in alternating rounds."""
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(rounds):
        for which, fn in enumerate((small, large)):
            for _ in range(per_round):
                if cold:
                    evict()
                began = time.perf_counter()
                fn()
                times[which].append(time.perf_counter() - began)
    return statistics.median(times[0]), statistics.median(times[1])


def count_ops(fn: Callable[[], None], is_couchbase: bool, store: ImageStore) -> str:
    """Store operations of one batch: SQL statements (SQLite) or SDK calls (Couchbase stand-in)."""
    calls: Counter[str] = Counter()
    if is_couchbase:
        originals, depth = {}, [0]
        for name in ("get", "get_multi", "lookup_in", "mutate_in", "exists"):
            originals[name] = real = getattr(fake_couchbase.FakeCollection, name)

            def counted(self, *a, _real=real, _name=name, **kw):  # noqa: ANN001, ANN202
                calls[_name] += depth[0] == 0  # the stand-in's get_multi calls its own get: count the outer
                depth[0] += 1
                try:
                    return _real(self, *a, **kw)
                finally:
                    depth[0] -= 1
            setattr(fake_couchbase.FakeCollection, name, counted)
        try:
            fn()
        finally:
            for name, real in originals.items():
                setattr(fake_couchbase.FakeCollection, name, real)
    else:
        conn = store._connect()
        conn.set_trace_callback(lambda sql: calls.update([sql.split()[0].upper()]))
        try:
            fn()
        finally:
            conn.set_trace_callback(None)
    return ", ".join(f"{n} {name}" for name, n in sorted(calls.items()) if n)


def report(name: str, small: ImageStore, large: ImageStore, args: argparse.Namespace, rates: tuple) -> None:
    a, b = batch_fn(small, args.batch, random.Random(1)), batch_fn(large, args.batch, random.Random(2))
    a(), b()  # each process loads a label's key list once: O(n) one time, O(batch) afterwards
    is_cb = isinstance(small, CouchbaseStore)
    print(f"{name}\n  fill: {rates[0]:,.0f} images/s ({args.small:,}), "
          f"{rates[1]:,.0f} images/s ({args.large:,})")
    print(f"  one batch of {args.batch} = {count_ops(a, is_cb, small)} at {args.small:,}; "
          f"{count_ops(b, is_cb, large)} at {args.large:,}")
    for cold in (True, False):
        t_small, t_large = side_by_side(a, b, args.rounds, 25 if cold else 100, cold)
        print(f"  {'cold' if cold else 'hot '}: {t_small * 1e3:.3f} ms/batch at {args.small:,}, "
              f"{t_large * 1e3:.3f} ms at {args.large:,}: ratio {t_large / t_small:.2f} (goal <= 1.3); "
              f"{args.batch / t_small:,.0f} and {args.batch / t_large:,.0f} images/s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    items = images(args.large)
    print(f"{args.large:,} unique 8x8 PNGs ({sum(len(i.data) for i in items) / len(items):.0f} bytes each) "
          f"made in {time.perf_counter() - began:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        small, large = (SQLiteStore(f"sqlite:///{Path(tmp) / f'{n}.db'}") for n in (args.small, args.large))
        rates = fill(small, items[:args.small]), fill(large, items)
        report("SQLite (WAL, one file)", small, large, args, rates)
        small.close(), large.close()
    stores = []
    for _ in range(2):
        store = CouchbaseStore(fake_couchbase.FakeCluster(buckets=["serptrain"]), check_layout=False)
        store.setup()
        stores.append(store)
    rates = fill(stores[0], items[:args.small]), fill(stores[1], items)
    report("Couchbase backend on the SDK stand-in (access-pattern check)", *stores, args, rates)
    blobs = {i.info.key: i.data for i in items}
    floor = side_by_side(dict_fn(dict(list(blobs.items())[:args.small]), args.batch, random.Random(3)),
                         dict_fn(blobs, args.batch, random.Random(4)), args.rounds, 100, cold=False)
    print(f"memory floor (plain dict, hot): {floor[0] * 1e6:.1f} us/batch at {args.small:,}, "
          f"{floor[1] * 1e6:.1f} us at {args.large:,}: ratio {floor[1] / floor[0]:.2f}")
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
