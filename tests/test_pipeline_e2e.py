"""The whole flow under Prefect's test harness, on a small synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

from flows.pipeline import train_classifier
from models.validation import validate_command
from store import open_store
from tests.helpers import small_command


def test_pipeline_trains_evaluates_and_publishes(prefect_harness, workdir: Path, store_url: str) -> None:
    command, _ = validate_command(small_command(
        ["circle", "square"], epochs=3, acquire={"source": "synthetic", "per_label": 40, "image_size": 32},
    ))
    result = train_classifier(command)

    bundle = Path(result["bundle_dir"])
    assert bundle.parent.parent == workdir / "runs" and bundle.parent.name == "tiny"
    assert (bundle / "model.safetensors").stat().st_size > 0
    spec = json.loads((bundle / "model.json").read_text())
    assert spec["labels"] == ["circle", "square"]
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert set(metrics["test"]["per_class"]) == {"circle", "square"}
    attempt = open_store(store_url).get_attempt(result["attempt_id"])
    assert attempt["status"] == "evaluated" and len(attempt["epochs"]) == 3


def test_second_run_ingests_nothing_twice(prefect_harness, workdir: Path, store_url: str) -> None:
    command, _ = validate_command(small_command(
        ["circle", "star"], epochs=1, acquire={"source": "synthetic", "per_label": 30, "image_size": 32},
    ))
    first = train_classifier(command)
    count_after_first = open_store(store_url).stats()["images"]
    second = train_classifier(command)
    assert open_store(store_url).stats()["images"] == count_after_first
    assert second["ingest"]["circle"]["stored"] == 0
    assert first["ingest"]["circle"]["stored"] > 0


def test_failed_run_marks_the_attempt_failed(prefect_harness, workdir: Path, store_url: str) -> None:
    command, _ = validate_command(small_command(["circle", "square"]))  # source store, but the store is empty
    state = train_classifier(command, return_state=True)
    assert state.is_failed()
    attempts = open_store(store_url).find_attempts("tiny")
    assert attempts[-1]["status"] == "failed" and "no training images" in attempts[-1]["reason"]


def test_a_failed_attempt_is_taken_up_again(prefect_harness, workdir: Path, store_url: str) -> None:
    from tests.helpers import fill_synthetic

    command, _ = validate_command(small_command(["circle", "square"], epochs=1))
    assert train_classifier(command, return_state=True).is_failed()  # no images yet
    failed = open_store(store_url).find_attempts("tiny")[-1]
    fill_synthetic(store_url, workdir / "images", ["circle", "square"], per_label=20)

    result = train_classifier(command, attempt_id=failed["id"])

    assert result["attempt_id"] == failed["id"]
    attempts = open_store(store_url).find_attempts("tiny")
    assert [a["id"] for a in attempts] == [failed["id"]] and attempts[0]["status"] == "evaluated"
