"""Shared fixtures: an isolated Prefect (one test harness per session), temp store and runs dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before Prefect is imported anywhere: no telemetry, and a Prefect home that is not the user's.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="serptrain-prefect-home-")
os.environ.setdefault("SERPTRAIN_NUM_WORKERS", "0")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store, runs dir and data dir for one test, set through the environment like a user would."""
    monkeypatch.setenv("SERPTRAIN_STORE", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("SERPTRAIN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SERPTRAIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def store_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'store.db'}"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors are slower with several threads on a shared 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
