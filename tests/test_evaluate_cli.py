"""serptrain evaluate: a bundle directory, or the older project's /test request file naming the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from store import open_store
from tests.helpers import train_small_bundle

LABELS = ["circle", "square"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def bundle(workdir: Path, store_url: str) -> Path:
    return train_small_bundle(store_url, workdir, LABELS, per_label=24, epochs=2, attempt_id="20260101-000000-aaaaaa")


def test_evaluate_a_bundle_prints_json(bundle: Path, store_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(bundle), "--json", "--split", "all"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == open_store(store_url).count() and set(out["per_class"]) == set(LABELS)
    assert len(out["confusion_matrix"]) == 2 and "top2_accuracy" in out


def test_evaluate_a_test_request_file(bundle: Path, workdir: Path, capsys: pytest.CaptureFixture) -> None:
    request = workdir / "test.json"
    request.write_text(json.dumps({"ids": [], "limit": 5, "label_names": ["square"], "n_labels": 0,
                                   "model_name": "tiny", "model": {"name": "", "layers": []}}))
    assert main(["evaluate", str(request), "--json", "--split", "all"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bundle"] == str(bundle) and out["images"] == 5 and out["per_class"]["square"]["support"] == 5


def test_evaluate_given_ids_and_text_output(bundle: Path, store_url: str, capsys: pytest.CaptureFixture) -> None:
    keys = open_store(store_url).keys("circle")[:3]
    assert main(["evaluate", str(bundle), "--ids", *keys]) == 0
    out = capsys.readouterr().out
    assert "on 3 images" in out and "circle" in out


def test_evaluate_refuses_labels_the_model_does_not_know(bundle: Path, workdir: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    request = workdir / "bad.json"
    request.write_text(json.dumps({"model_name": "tiny", "label_names": ["zebra"], "limit": 3}))
    assert main(["evaluate", str(request)]) == 2
    assert "zebra" in capsys.readouterr().err
    request.write_text(json.dumps({"model_name": "never-trained"}))
    assert main(["evaluate", str(request)]) == 2
    assert "no trained bundle" in capsys.readouterr().err
