"""The CLI as a user meets it: exit codes, messages on stderr, no tracebacks for user mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def serptrain(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_validate_prints_normalized_command_and_writes_nothing(workdir: Path) -> None:
    (workdir / "cmd.yaml").write_text("model_name: shapes\nlabels: [circle, square]\nepochs: 3\n")
    before = set(workdir.iterdir())
    done = serptrain("validate", "cmd.yaml", cwd=workdir)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["command"]["epochs"] == 3 and out["dry_run"]["output_shape"] == [2]
    assert set(workdir.iterdir()) == before
    assert not (workdir / "runs").exists() and not (workdir / "store.db").exists()


@pytest.mark.parametrize("content, needle", [
    ('{"model_name": "m", "labels": ["a", "b"], "optimizer": {"name": "Adamm"}}', "optimizer.name"),
    ("{not json", "not valid JSON"),
])
def test_validate_rejects_without_traceback(workdir: Path, content: str, needle: str) -> None:
    (workdir / "cmd.json").write_text(content)
    done = serptrain("validate", "cmd.json", cwd=workdir)
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_run_without_images_or_source_explains_what_to_do(workdir: Path) -> None:
    (workdir / "cmd.yaml").write_text("model_name: shapes\nlabels: [circle, square]\n")
    env_key = os.environ.pop("SERPAPI_API_KEY", None)
    try:
        done = serptrain("run", "cmd.yaml", cwd=workdir)
    finally:
        if env_key:
            os.environ["SERPAPI_API_KEY"] = env_key
    assert done.returncode == 2
    assert "SERPAPI_API_KEY" in done.stderr and "Traceback" not in done.stderr


def test_import_folder_then_store_holds_the_images(workdir: Path) -> None:
    from tasks.synthetic import generate

    generate(workdir / "pics", ["circle", "square"], 5, 32)
    done = serptrain("import-folder", "pics", "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["circle"]["seen"] == 5 and report["circle"]["stored"] + report["circle"]["near_duplicates"] == 5
    # stderr is a pipe here, as in a log: progress comes as whole lines, ending at the total
    progress = done.stderr.splitlines()
    assert progress[-1] == "ingested 10/10" and all(line.startswith("ingested ") for line in progress)
    again = json.loads(serptrain("import-folder", "pics", "--json", cwd=workdir).stdout)
    assert again["circle"]["stored"] == 0


def test_bad_settings_in_the_environment_name_the_variable(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERPTRAIN_TRUSTED_NETWORKS", "10.1.0.0/16, intranet")
    monkeypatch.setenv("SERPTRAIN_CACHE_MB", "lots")
    done = serptrain("store", "stats", cwd=workdir)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "SERPTRAIN_TRUSTED_NETWORKS: 'intranet' is not an IP address or network" in done.stderr
    assert "SERPTRAIN_CACHE_MB:" in done.stderr and "'lots'" in done.stderr


def test_summary_says_steps_in_seed_mode_and_epochs_otherwise() -> None:
    from flows.cli_pipeline import format_summary

    result = {"model_name": "m", "attempt_id": "a1", "counts": {"cat": {"train": 8, "val": 1, "test": 1}},
              "epochs": 3, "steps": 100, "device": "cpu", "train_seconds": 1.0, "test_accuracy": 0.5,
              "test_images": 2, "bundle_dir": "runs/m/a1"}
    assert "steps: 100 on random batches (3 rounds) on cpu" in format_summary(result)
    assert "  epochs: 3 on cpu" in format_summary({**result, "steps": None})


def test_two_first_runs_at_once_share_a_fresh_prefect_home_cleanly(tmp_path: Path) -> None:
    # Both start a temporary Prefect server on the same new database: built once, under a lock.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SERPTRAIN_"))}
    env.update({"PYTHONPATH": str(REPO), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "SERPTRAIN_NUM_WORKERS": "0"})
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            f"model_name: m{name}\nlabels: [circle, square]\nepochs: 1\nbatch_size: 16\n"
            "image_ops: [{resize: {size: [16, 16]}}, {convert: {mode: RGB}}]\n"
            "acquire: {source: synthetic, per_label: 12, image_size: 32}\n")
    runs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "run", f"{name}.yaml"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert not any("Traceback" in out or "| ERROR" in out for out in outputs), outputs
    assert (tmp_path / ".serptrain" / "prefect" / "prefect.db").is_file()


def test_tables_keep_long_label_names_whole_and_align_numbers() -> None:
    from flows.tables import text_table

    long_name = "Chesapeake Bay Retriever imagesize:500x500"
    lines = text_table(["label", "train", "acc"], [(long_name, 19, 0.5), ("cat", 120, None)])
    assert lines[1].startswith(long_name + "  ") and lines[1].endswith("19  0.500")
    assert lines[2].startswith("cat ") and lines[2].endswith("120      -")
    assert len({len(line) for line in lines}) == 1  # columns line up
