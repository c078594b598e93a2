"""Starting from pretrained weights: local files only (safetensors or weights_only torch.load), head resized."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models.errors import UserError
from models.network import build_layers
from models.validation import validate_command
from models.zoo import load_weights, zoo_layer
from store import open_store
from tasks.training.loop import TrainOptions, train
from tests.helpers import fill_synthetic, small_command

LABELS = ["circle", "square"]


def _squeezenet(n_labels: int) -> torch.nn.Module:
    return build_layers([zoo_layer("squeezenet1_1", n_labels)], (3, 32, 32), n_labels).module


def test_torchvision_style_file_loads_into_a_zoo_model_except_the_head(tmp_path: Path) -> None:
    source = _squeezenet(10)[0]  # bare torchvision keys, as torchvision's own weight files have
    torch.save(source.state_dict(), tmp_path / "imagenet.pt")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "imagenet.safetensors"))
    for name in ("imagenet.pt", "imagenet.safetensors"):
        target = _squeezenet(3)
        report = load_weights(target, str(tmp_path / name), "squeezenet1_1")
        assert torch.equal(target.state_dict()["0.features.0.weight"], source.state_dict()["features.0.weight"])
        assert report["skipped"] == ["0.classifier.1.bias", "0.classifier.1.weight"]


def test_pickled_objects_and_unknown_names_are_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.ones(1), "extra": Path("x")}, tmp_path / "pickled.pt")
    with pytest.raises(UserError, match="not a plain state dict"):
        load_weights(_squeezenet(2), str(tmp_path / "pickled.pt"), "squeezenet1_1")
    with pytest.raises(UserError, match="no weights 'IMAGENET9K'.*choices: IMAGENET1K_V1"):
        load_weights(_squeezenet(2), "IMAGENET9K", "squeezenet1_1")
    with pytest.raises(UserError, match="no such file"):
        load_weights(_squeezenet(2), "missing/model.safetensors", "squeezenet1_1")


def test_fine_tuning_starts_from_a_previous_bundle(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=16, size=16)
    store = open_store(store_url)
    first, _ = validate_command(small_command(LABELS, epochs=1))
    base = train(first, store, TrainOptions(workdir / "runs", "base", workers=0))
    command, _ = validate_command(small_command(
        LABELS, epochs=1, model={"preset": "tiny_cnn", "weights": str(base.bundle_dir / "model.safetensors")}))
    tuned = train(command, store, TrainOptions(workdir / "runs", "tuned", workers=0))
    assert tuned.extra["pretrained"]["loaded"] > 0 and not tuned.extra["pretrained"]["skipped"]


def no_network(*args, **kwargs):
    raise urllib.error.URLError("Name or service not known")  # as download.pytorch.org answers from here


def test_weights_that_cannot_be_fetched_say_where_the_file_goes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "urlopen", no_network)  # the outside world: no route to the weights host
    with pytest.raises(UserError, match=r"could not fetch squeezenet1_1 IMAGENET1K_V1 from https://") as caught:
        load_weights(_squeezenet(2), "IMAGENET1K_V1", "squeezenet1_1")
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in str(caught.value)


def test_the_flow_fetches_weights_before_scraping_anything(prefect_harness, workdir: Path, store_url: str,
                                                          monkeypatch) -> None:
    from flows.pipeline import train_classifier

    monkeypatch.setenv("TORCH_HOME", str(workdir / "torch"))
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    command, _ = validate_command(small_command(
        LABELS, model={"preset": "squeezenet1_1", "weights": "DEFAULT"},
        image_ops=[{"resize": {"size": [64, 64]}}, {"convert": {"mode": "RGB"}}],
        acquire={"source": "synthetic", "per_label": 10, "image_size": 32}))
    assert train_classifier(command, return_state=True).is_failed()
    [attempt] = open_store(store_url).find_attempts("tiny")
    assert attempt["status"] == "failed" and "could not fetch squeezenet1_1 DEFAULT" in attempt["reason"]
    assert open_store(store_url).count() == 0  # nothing was acquired


def test_validation_names_weights_that_cannot_fit(tmp_path: Path) -> None:
    from models.errors import CommandError

    for model, expected in [({"preset": "resnet18", "weights": "IMAGENET9K"}, "resnet18 has no weights"),
                            ({"preset": "tiny_cnn", "weights": "DEFAULT"}, "neither a local file"),
                            ({"preset": "tiny_cnn", "weights": str(tmp_path / "gone.safetensors")}, "no such file")]:
        with pytest.raises(CommandError) as caught:
            validate_command(small_command(LABELS, model=model))
        assert [p.path for p in caught.value.problems] == ["model.weights"]
        assert expected in caught.value.problems[0].message
