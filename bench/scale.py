"""Scaling out on this machine: training with 1 vs 2 processes (DDP, gloo on CPU) and acquisition with 1 vs 2
Dask workers, measured side by side in one run; prints images/s and the ratios.

Training: the demo command (4 shape classes, tiny CNN, 32x32) on a synthetic store; the single-process trainer
(`tasks.training.loop.train`, once with torch's default threads, once with one) against `run_distributed`
with SERPTRAIN_NPROC_PER_NODE=2 (one thread per rank on 2 cores), all without DataLoader workers.
"steady" = images/s of the epochs after the first (the trainer's own per-epoch figure, summed over ranks);
"wall" = all training images / seconds from call to return (torchrun and process-group start-up included).
Acquisition: the acquisition flow with prefect-dask's DaskTaskRunner on a distributed.LocalCluster of 1, then
2, worker processes (2 threads each), against the test fixtures' fake SerpApi and image host (with per-request
latency, as the web has); each run into a fresh store and page cache.

    python bench/scale.py [--per-label 150] [--epochs 4] [--rounds 2] [--pages 12] [--latency 0.02] [--skip-training]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402

from models.command import Command  # noqa: E402
from models.defaults import demo_command  # noqa: E402
from models.settings import Settings  # noqa: E402
from models.validation import validate_command  # noqa: E402
from store import open_store  # noqa: E402
from tasks.ingest import Ingestor, folder_images, ingest_paths  # noqa: E402
from tasks.synthetic import generate  # noqa: E402
from tasks.training.launch import run_distributed, trainer_is_ddp_aware  # noqa: E402
from tasks.training.loop import TrainOptions, train  # noqa: E402

# Training ------------------------------------------------------------------------------------------------

def fill_store(root: Path, labels: list[str], per_label: int) -> str:
    url = f"sqlite:///{root / 'store.db'}"
    generate(root / "images", labels, per_label, 64, seed=0)
    ingest_paths(Ingestor(open_store(url)), list(folder_images(root / "images")))
    return url


def throughput(history: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    later = history[1:] or history
    images = sum(entry["images"] for entry in history)
    return {"steady": statistics.median(e["images_per_s"] for e in later), "wall": images / seconds}


def train_single(command: Command, url: str, root: Path, threads: int, attempt: str) -> dict[str, float]:
    """The single-process trainer with `threads` torch threads (the trainer keeps a caller's lower setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        result = train(command, open_store(url), TrainOptions(root / "runs", attempt, "cpu", workers=0))
        return throughput(result.history, time.perf_counter() - started)
    finally:
        torch.set_num_threads(before)


def train_two(command: Command, url: str, root: Path, attempt: str) -> dict[str, float]:
    settings = Settings(store=url, runs_dir=root / "runs", nproc_per_node=2, device="cpu", num_workers=0)
    started = time.perf_counter()
    result = run_distributed(command, attempt, url, settings, log=lambda line: None)
    return throughput(result["history"], time.perf_counter() - started)


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: max(run[name] for run in runs) for name in ("steady", "wall")}


def bench_training(root: Path, per_label: int, epochs: int, rounds: int) -> None:
    raw = demo_command() | {"epochs": epochs, "scheduler": None, "acquire": {"source": "store"}}
    command, _ = validate_command(raw)
    url = fill_store(root, command.label_names(), per_label)
    ddp = trainer_is_ddp_aware()
    threads = torch.get_num_threads()
    configs = {f"1 process, {threads} thread(s)": lambda a: train_single(command, url, root, threads, a),
               "1 process, 1 thread": lambda a: train_single(command, url, root, 1, a)}
    if ddp:
        configs["2 processes, 1 thread each"] = lambda a: train_two(command, url, root, a)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for round_no in range(rounds):  # alternating, so that the machine's load hits every configuration alike
        for n, (name, run) in enumerate(configs.items()):
            runs[name].append(run(f"c{n}-r{round_no}"))  # a fresh attempt: no resume from the last round
    figures = {name: best(results) for name, results in runs.items()}
    for name, fig in figures.items():
        print(f"training, {name:28s}: steady {fig['steady']:7.0f} img/s   wall {fig['wall']:7.0f} img/s")
    if not ddp:
        print("training, 2 processes: SKIPPED - DDP is not wired into the trainer yet (tasks/training/loop.py "
              "does not call init_distributed); apply the DDP trainer patch")
        return
    two = figures.pop("2 processes, 1 thread each")
    one = max(figures.values(), key=lambda fig: fig["steady"])
    single_thread = figures["1 process, 1 thread"]
    print(f"training ratio 2 processes / best 1 process: steady {two['steady'] / one['steady']:.2f}x   "
          f"wall {two['wall'] / one['wall']:.2f}x   (best of {rounds} alternating rounds)")
    print(f"training ratio 2 processes / 1 process at 1 thread (same threads per process): "
          f"steady {two['steady'] / single_thread['steady']:.2f}x")


# Acquisition ----------------------------------------------------------------------------------------------

def acquire_once(flow: Any, root: Path, tag: str, plans: list) -> float:
    """One acquisition into a fresh store and page cache; images stored per second."""
    from pydantic import SecretStr

    os.environ["SERPTRAIN_DATA_DIR"] = str(root / f"acq-data-{tag}")
    started = time.perf_counter()
    report = flow(plans, f"sqlite:///{root / f'acq-{tag}.db'}", SecretStr("bench-key"))
    seconds = time.perf_counter() - started
    stored = sum(entry["stored"] for entry in report["labels"].values())
    print(f"acquisition, {tag:28s}: {stored} images in {seconds:5.1f}s = {stored / seconds:6.1f} img/s")
    return stored / seconds


def bench_acquisition(root: Path, pages: int, latency: float) -> None:
    import distributed
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect.testing.utilities import prefect_test_harness

    from flows.acquire import acquire_images
    from flows.runners import dask_task_runner
    from models.acquire_request import LabelPlan
    from tests.fixtures.fake_serpapi import FakeSerpApi
    from tests.fixtures.image_host import ImageHost

    per_page, labels = 25, ["alpha", "beta"]
    # Cluster start/stop chatter (and the expected closed-connection errors at shutdown) would bury the figures.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"  # the same in the worker processes started below
    os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
    for name in ("prefect.task_runs", "prefect.flow_runs"):  # this process's loggers are configured already
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.update({"SERPTRAIN_ALLOW_PRIVATE_HOSTS": "1", "SERPAPI_API_KEY": "bench-key",
                       "SERPTRAIN_ACQUIRE_SEARCH_RETRY_DELAY_S": "0.01"})
    with prefect_test_harness(server_startup_timeout=180), FakeSerpApi(api_key="bench-key", per_page=per_page) as api, \
            ImageHost(latency_s=latency) as host:
        os.environ["SERPTRAIN_SERPAPI_URL"] = api.url
        for n, label in enumerate(labels):
            api.add_query(label, [host.good(f"{label}/{i}.png", 10_000 * n + i) for i in range(per_page * pages)])
        plans = [LabelPlan(label=label, queries=[label], pages=pages, target=per_page * pages) for label in labels]
        threads = acquire_images.with_options(task_runner=ThreadPoolTaskRunner(max_workers=4))
        acquire_once(threads, root, "threads, in-process, 4 pages", plans)  # the reference: no Dask at all
        rates = {}
        for workers in (1, 2):
            # Started before the clock: a cluster is long-lived, not part of one acquisition.
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=2, processes=True,
                                          dashboard_address=None, silence_logs=40) as cluster:
                flow = acquire_images.with_options(task_runner=dask_task_runner(cluster.scheduler_address))
                rates[workers] = acquire_once(flow, root, f"Dask, {workers} worker(s) x 2 threads", plans)
        print(f"acquisition ratio 2/1 Dask workers: {rates[2] / rates[1]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=150, help="synthetic training images per label")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="alternating training rounds; the best is shown")
    parser.add_argument("--pages", type=int, default=12, help="result pages per label (25 images each)")
    parser.add_argument("--latency", type=float, default=0.02, help="image host latency per request, seconds")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="serptrain-scale-") as tmp:
        if not args.skip_training:
            bench_training(Path(tmp) / "train", args.per_label, args.epochs, args.rounds)
        bench_acquisition(Path(tmp), args.pages, args.latency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
