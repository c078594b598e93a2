"""serptrain predict: image files and URLs through a bundle; only the bundle (safetensors + json) is needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flows.cli import main
from tests.fixtures.image_host import ImageHost
from tests.helpers import train_small_bundle

LABELS = ["circle", "square", "star"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def bundle(workdir: Path, store_url: str) -> Path:
    trained = train_small_bundle(store_url, workdir, LABELS, per_label=12, epochs=1, attempt_id="p1")
    copy = workdir / "copied-bundle"  # only the two files travel
    copy.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(trained / name, copy / name)
    return copy


def test_predict_files_and_urls(bundle: Path, workdir: Path, capsys: pytest.CaptureFixture,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERPTRAIN_ALLOW_PRIVATE_HOSTS", "true")
    image = next((workdir / "images" / "star").iterdir())
    with ImageHost() as host:
        url = host.good("pic.png", seed=1)
        assert main(["predict", str(bundle), str(image), url, "--top-k", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(image), url]
    for result in results:
        probabilities = [t["probability"] for t in result["top"]]
        assert len(probabilities) == 2 and probabilities == sorted(probabilities, reverse=True)
        assert {t["label"] for t in result["top"]} <= set(LABELS)


def test_predict_text_output_and_bad_inputs(bundle: Path, workdir: Path, capsys: pytest.CaptureFixture) -> None:
    image = next((workdir / "images" / "circle").iterdir())
    assert main(["predict", str(bundle), str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")
    (workdir / "notes.txt").write_text("not an image")
    assert main(["predict", str(bundle), str(workdir / "notes.txt")]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert main(["predict", str(workdir), str(image)]) == 2
    assert "not a model bundle" in capsys.readouterr().err
