"""Distributed scraping: the acquisition flow on a Dask cluster (2 worker processes) stores exactly what the
in-process thread pool stores, against the local fake SerpApi and image host."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runners import acquisition_task_runner
from models.errors import UserError
from models.settings import Settings
from store import open_store
from store.base import SPLITS
from tests.fixtures.fake_serpapi import FakeSerpApi
from tests.fixtures.image_host import ImageHost

distributed = pytest.importorskip("distributed", reason="distributed not installed: pip install 'serptrain[dask]'")
pytest.importorskip("prefect_dask", reason="prefect-dask not installed: pip install 'serptrain[dask]'")

from flows.acquire import acquire_labels  # noqa: E402
from models.acquire_request import LabelPlan  # noqa: E402

LABELS = {"cats": 27, "dogs": 22}  # results per query: several pages of 10, the last one short


pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Set before the cluster starts: its worker processes take the environment they were started with.
    for name, value in {
        "SERPTRAIN_ALLOW_PRIVATE_HOSTS": "1", "SERPAPI_API_KEY": "test-key",
        "SERPTRAIN_ACQUIRE_SEARCH_RETRY_DELAY_S": "0.01", "SERPTRAIN_ACQUIRE_DOWNLOAD_TIMEOUT_S": "5",
        "SERPTRAIN_ACQUIRE_DOWNLOAD_RETRIES": "1", "SERPTRAIN_ACQUIRE_DOWNLOAD_RETRY_DELAY_S": "0.01",
        "SERPTRAIN_STORE": f"sqlite:///{tmp_path / 'unused.db'}", "PREFECT_LOGGING_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def catalogue(api: FakeSerpApi, host: ImageHost) -> None:
    """Good images, one exact duplicate across pages, and faults that fail the same way every time."""
    for n, (label, count) in enumerate(LABELS.items()):
        urls = [host.good(f"{label}/{i}.png", 1000 * n + i) for i in range(count)]
        faults = host.standard_faults(prefix=f"bad-{label}")
        urls[3:3] = [faults["http_404"], faults["truncated"], faults["html"]]
        urls.insert(15, urls[0])  # on the second page
        api.add_query(label, urls)


def run_acquisition(env: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[dict, str]:
    monkeypatch.setenv("SERPTRAIN_DATA_DIR", str(env / f"data-{name}"))  # own page cache: each run asks SerpApi
    store_url = f"sqlite:///{env / f'{name}.db'}"
    plans = [LabelPlan(label=label, queries=[label], pages=5, target=200) for label in LABELS]
    report = acquire_labels(plans, store_url)  # the CLI's and the pipeline's entry point: runner from settings
    return report, store_url


def keys_per_label(store_url: str) -> dict[str, set[str]]:
    store = open_store(store_url)
    return {label: {key for split in SPLITS for key in store.keys(label, split)} for label in LABELS}


def counts(report: dict) -> dict[str, tuple]:
    return {label: (entry["stored"], entry["duplicates"], entry["pages"], dict(entry["rejected"]))
            for label, entry in report["labels"].items()}


def test_dask_cluster_stores_exactly_what_the_thread_pool_stores(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSerpApi(per_page=10) as api, ImageHost() as host:
        catalogue(api, host)
        monkeypatch.setenv("SERPTRAIN_SERPAPI_URL", api.url)
        monkeypatch.setenv("SERPTRAIN_TASK_RUNNER", "threads")
        threads_report, threads_store = run_acquisition(env, monkeypatch, "threads")
        thread_requests = api.count

        with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
                                      silence_logs=40) as cluster:
            monkeypatch.setenv("SERPTRAIN_TASK_RUNNER", "dask")
            monkeypatch.setenv("SERPTRAIN_DASK_ADDRESS", cluster.scheduler_address)
            before = cluster.scheduler.transition_counter
            dask_report, dask_store = run_acquisition(env, monkeypatch, "dask")
            transitions = cluster.scheduler.transition_counter - before

    assert transitions > 0  # the page tasks went through the cluster's scheduler
    assert api.count == 2 * thread_requests  # the Dask run asked SerpApi for every page itself
    stored = keys_per_label(threads_store)
    assert {label: len(keys) for label, keys in stored.items()} == LABELS  # every good image, once
    assert keys_per_label(dask_store) == stored
    assert counts(dask_report) == counts(threads_report)
    assert counts(threads_report)["cats"][3] == {"http_404": 1, "truncated": 1, "html": 1}


def test_runner_is_chosen_by_settings() -> None:
    runner = acquisition_task_runner(Settings(task_runner="threads"), max_workers=3)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3
    assert acquisition_task_runner(Settings(), max_workers=5)._max_workers == 5
    dask = acquisition_task_runner(Settings(task_runner="dask", dask_address="tcp://127.0.0.1:8786"))
    assert type(dask).__name__ == "DaskTaskRunner"


def test_dask_without_an_address_is_a_user_error() -> None:
    with pytest.raises(UserError, match="SERPTRAIN_DASK_ADDRESS"):
        acquisition_task_runner(Settings(task_runner="dask", dask_address=""))


def test_dask_without_prefect_dask_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # import now fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'serptrain\[dask\]'"):
        acquisition_task_runner(Settings(task_runner="dask", dask_address="tcp://127.0.0.1:8786"))
