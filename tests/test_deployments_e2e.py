"""The deployments against a real Prefect server: server, work pool, `prefect deploy --all`, a process worker.

Everything runs in child processes with a temporary PREFECT_HOME and temporary serptrain dirs; every process
started here (and whatever it started) is killed when the module ends, pass or fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from store import open_store

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
MODEL = "e2e-shapes"
# Generous: a loaded 2-core machine takes seconds to spawn each flow-run process (torch, Prefect imports).
SERVER_TIMEOUT_S, RUN_TIMEOUT_S, TRIGGER_TIMEOUT_S = 120, 240, 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Children of pid, recursively, from /proc (Linux); empty where /proc is not there."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found


@dataclass
class Service:
    """A Prefect server with a worker, as child processes; logs go to files shown when a check fails."""

    tmp: Path
    env: dict[str, str]
    api: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed with the process's life
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: killed as one
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def stop(self) -> None:
        for proc in reversed(self.procs):  # the worker before the server
            stragglers = descendants(proc.pid)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, sig)
                        proc.wait(timeout=15)
                    except (ProcessLookupError, subprocess.TimeoutExpired):
                        pass
            for pid in stragglers:  # flow runs that put themselves in another process group
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text()[-4000:]}" for p in sorted(self.tmp.glob("*.log")))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")


def isolated_env(tmp: Path, api: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SERPTRAIN_", "SERPAPI_"))}
    env.update({
        "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_API_URL": api, "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_LOCAL_STORAGE_PATH": str(tmp / "results"),
        "SERPTRAIN_STORE": f"sqlite:///{tmp / 'store.db'}", "SERPTRAIN_RUNS_DIR": str(tmp / "runs"),
        "SERPTRAIN_DATA_DIR": str(tmp / "data"), "SERPTRAIN_NUM_WORKERS": "0", "SERPTRAIN_DEVICE": "cpu",
    })
    return env


def wait_healthy(service: Service, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited\n{service.logs()}"
        try:
            if service.request("GET", "/health") is True:
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"no healthy server after {SERVER_TIMEOUT_S}s\n{service.logs()}")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("service")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    svc = Service(tmp, isolated_env(tmp, api, port), api)
    try:
        server = svc.start("server", str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                           "--port", str(port))
        wait_healthy(svc, server)
        svc.run(str(BIN / "prefect"), "work-pool", "create", "serptrain", "--type", "process")
        deployed = svc.run(str(BIN / "prefect"), "deploy", "--all", "--no-prompt", timeout=300)
        (tmp / "deploy.log").write_text(deployed)
        svc.start("worker", str(BIN / "prefect"), "worker", "start", "--pool", "serptrain")
        yield svc
    finally:
        svc.stop()


def deployment(service: Service, flow: str, name: str) -> dict[str, Any]:
    return service.request("GET", f"/deployments/name/{flow}/{name}")


def wait_terminal(service: Service, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = service.request("GET", f"/flow_runs/{run_id}")
        if run["state"] and run["state"]["type"] in TERMINAL:
            return run
        time.sleep(2)
    raise AssertionError(f"flow run {run_id} not finished after {RUN_TIMEOUT_S}s\n{service.logs()}")


def small_command() -> dict[str, Any]:
    return {
        "model_name": MODEL, "labels": ["circle", "square"], "epochs": 2, "batch_size": 16,
        "image_ops": [{"resize": {"size": [16, 16]}}, {"convert": {"mode": "RGB"}}],
        "acquire": {"source": "synthetic", "per_label": 30, "image_size": 32},
    }


def trained_run(service: Service) -> dict[str, Any]:
    """One train-classifier run through the REST API, shared by the tests that need a trained model."""
    if "trained" not in service.cache:
        deployment_id = deployment(service, "train-classifier", "train-classifier")["id"]
        created = service.request("POST", f"/deployments/{deployment_id}/create_flow_run",
                                  {"parameters": {"command": small_command()}})
        service.cache["trained"] = wait_terminal(service, created["id"])
    return service.cache["trained"]


def test_manual_run_through_the_rest_api_trains_a_bundle(service: Service) -> None:
    run = trained_run(service)
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{service.logs()}"
    attempts = open_store(service.env["SERPTRAIN_STORE"]).find_attempts(MODEL)
    assert [a["status"] for a in attempts] == ["evaluated"]
    bundle = Path(attempts[0]["bundle_dir"])
    assert bundle.parent == service.tmp / "runs" / MODEL
    assert (bundle / "model.safetensors").stat().st_size > 0 and (bundle / "metrics.json").exists()
    # the run's summary was persisted (JSON) under the configured local result path
    results = [json.loads(p.read_text()) for p in (service.tmp / "results").iterdir() if p.is_file()]
    assert any(attempts[0]["id"] in json.dumps(r) for r in results)


def seed_spelled_command() -> dict[str, Any]:
    """The older project's spelling (seed-commands/train.json), on the labels the first run put in the store."""
    return {
        "model_name": "e2e-seed", "label_names": ["circle", "square"], "n_labels": 0, "n_epoch": 6,
        "batch_size": 8, "criterion": {"name": "CrossEntropyLoss"}, "optimizer": {"name": "Adam", "lr": 0.003},
        "image_ops": [{"resize": {"size": [16, 16], "resample": "Image.ANTIALIAS"}}, {"convert": {"mode": "'RGB'"}}],
        "transform": {"ToTensor": True}, "target_transform": {"ToTensor": True},
        "model": {"name": "", "layers": [{"name": "Flatten"}, {"name": "Linear", "in_features": "auto",
                                                                    "out_features": "n_labels"}]},
    }


def run_command(service: Service, command: dict[str, Any]) -> dict[str, Any]:
    deployment_id = deployment(service, "train-classifier", "train-classifier")["id"]
    created = service.request("POST", f"/deployments/{deployment_id}/create_flow_run",
                              {"parameters": {"command": command}})
    return wait_terminal(service, created["id"])


def test_seed_spelled_command_through_the_rest_api_trains(service: Service) -> None:
    assert trained_run(service)["state"]["type"] == "COMPLETED"
    run = run_command(service, seed_spelled_command())
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{service.logs()}"
    [attempt] = open_store(service.env["SERPTRAIN_STORE"]).find_attempts("e2e-seed")
    assert attempt["status"] == "evaluated" and attempt["command"]["steps"] == 6
    assert [label["name"] for label in attempt["command"]["labels"]] == ["circle", "square"]


def test_misspelled_command_through_the_rest_api_fails_naming_the_field(service: Service) -> None:
    command = {**small_command(), "model_name": "e2e-typo", "epohcs": 3}
    run = run_command(service, command)
    assert run["state"]["type"] == "FAILED"
    assert "epohcs" in run["state"]["message"], f"{run['state']}\n{service.logs()}"
    assert open_store(service.env["SERPTRAIN_STORE"]).find_attempts("e2e-typo") == []


def test_label_request_event_triggers_a_completed_retraining(service: Service) -> None:
    assert trained_run(service)["state"]["type"] == "COMPLETED"
    target = deployment(service, "on-new-label", "on-new-label")
    out = service.run(str(BIN / "serptrain"), "request-label", "triangle", "--query", "triangle shape",
                      "--query", "three sided polygon", "--model", MODEL, "--source", "synthetic")
    assert json.loads(out)["payload"]["queries"] == ["triangle shape", "three sided polygon"]

    deadline, runs = time.monotonic() + TRIGGER_TIMEOUT_S, []
    while not runs and time.monotonic() < deadline:
        runs = service.request("POST", "/flow_runs/filter",
                               {"deployments": {"id": {"any_": [target["id"]]}}})
        time.sleep(2)
    assert runs, f"no on-new-label run within {TRIGGER_TIMEOUT_S}s of the event\n{service.logs()}"
    run = wait_terminal(service, runs[0]["id"])
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{service.logs()}"
    assert run["parameters"]["queries"] == ["triangle shape", "three sided polygon"]

    attempts = open_store(service.env["SERPTRAIN_STORE"]).find_attempts(MODEL)
    newest = attempts[-1]
    labels = [label["name"] for label in newest["command"]["labels"]]
    assert labels == ["circle", "square", "triangle"]
    assert newest["command"]["labels"][2]["queries"] == ["triangle shape", "three sided polygon"]
    assert newest["champion"] is True and newest["promotion"]["promoted"] is True  # no champion before it


def test_deployments_expose_the_command_form_schedule_and_trigger(service: Service) -> None:
    schema = deployment(service, "train-classifier", "train-classifier")["parameter_openapi_schema"]
    assert schema["required"] == ["command"]
    command = schema["definitions"]["Command"]
    assert {"model_name", "labels", "optimizer", "epochs", "model", "acquire"} <= set(command["properties"])
    assert command["properties"]["epochs"]["description"]
    acquire = schema["definitions"]["AcquireSpec"]["properties"]["source"]
    assert "synthetic" in acquire["enum"]

    nightly = deployment(service, "nightly-retrain", "nightly-retrain")
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 3 * * *"]
    pull = deployment(service, "on-new-label", "on-new-label")["pull_steps"]
    assert pull[0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)


def test_request_label_without_a_server_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    done = subprocess.run([str(BIN / "serptrain"), "request-label", "zebra", "--query", "zebra"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "PREFECT_API_URL" in done.stderr
