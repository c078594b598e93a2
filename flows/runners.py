"""Where the acquisition flow's tasks run: an in-process thread pool (default) or an existing Dask cluster.

SERPTRAIN_TASK_RUNNER=threads: Prefect's ThreadPoolTaskRunner, SERPTRAIN_ACQUIRE_PAGE_CONCURRENCY pages at once.
SERPTRAIN_TASK_RUNNER=dask: prefect-dask's DaskTaskRunner connected to SERPTRAIN_DASK_ADDRESS; page tasks
(search + download + ingest) then run on the cluster's workers, each opening the shared store itself.
We start no cluster here: one is run and sized by whoever operates it (dask-scheduler / dask-worker,
dask-kubernetes, Coiled...), so the flow never pretends to be one.
"""

from __future__ import annotations

from prefect import Flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from models.errors import UserError
from models.settings import Settings, load_settings

DASK_EXTRA = "pip install 'serptrain[dask]'"


def dask_task_runner(address: str) -> TaskRunner:
    """A DaskTaskRunner on the cluster at address (tcp://HOST:8786)."""
    if not address.strip():
        raise UserError("SERPTRAIN_TASK_RUNNER=dask needs SERPTRAIN_DASK_ADDRESS, the scheduler of a running Dask "
                        "cluster (e.g. tcp://dask-scheduler:8786)")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise UserError(f"SERPTRAIN_TASK_RUNNER=dask needs the prefect-dask package: {DASK_EXTRA}") from None
    return DaskTaskRunner(address=address.strip())


def acquisition_task_runner(settings: Settings | None = None, max_workers: int | None = None) -> TaskRunner:
    """The task runner the settings ask for; max_workers overrides the thread pool's size."""
    settings = settings or load_settings()
    if settings.task_runner == "dask":
        return dask_task_runner(settings.dask_address)
    if max_workers is None:
        from models.acquire_request import load_acquire_settings

        max_workers = load_acquire_settings().page_concurrency
    return ThreadPoolTaskRunner(max_workers=max_workers)


def with_acquisition_runner(flow: Flow, settings: Settings | None = None, max_workers: int | None = None) -> Flow:
    """`flow` with the configured task runner: `with_acquisition_runner(acquire_images)(plans, ...)`."""
    return flow.with_options(task_runner=acquisition_task_runner(settings, max_workers))

