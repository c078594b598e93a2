"""Every registry entry is built and run at least once, through the same dry run a user's command gets."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from models.catalog import IMAGE_OPS, LAYERS, LOSSES, OPTIMIZERS, SCHEDULERS, SYMBOLS, TRANSFORMS
from models.registries import Entry, Registry
from models.validation import validate_command

pytestmark = pytest.mark.usefixtures("one_thread")


HEAD = [{"name": "Flatten"}, {"name": "Linear", "in_features": "auto", "out_features": "n_labels"}]


def small(**overrides: Any) -> dict[str, Any]:
    """A command that dry-runs in milliseconds: 16-pixel images, a linear head."""
    command = {
        "model_name": "registry-test", "labels": ["a", "b", "c"],
        "image_ops": [{"resize": {"size": [32, 32]}}, {"convert": {"mode": "RGB"}}],
        "transform": {"Resize": {"size": [16, 16]}, "ToTensor": True},
        "model": {"layers": HEAD},
    }
    return command | overrides


def ids(registry: Registry) -> dict[str, Any]:
    return {"argvalues": registry.entries(), "ids": registry.names()}


def call(entry: Entry) -> dict[str, Any]:
    return {"name": entry.name, **(entry.example or {})}


@pytest.mark.parametrize("entry", **ids(LOSSES))
def test_each_loss_runs_forward_and_backward(entry: Entry) -> None:
    _, report = validate_command(small(criterion=call(entry)))
    assert report.output_shape == (3,)


@pytest.mark.parametrize("entry", **ids(OPTIMIZERS))
def test_each_optimizer_is_built_and_steps(entry: Entry) -> None:
    _, report = validate_command(small(optimizer=call(entry)))
    assert report.memory["optimizer_state"] >= 0 and report.parameters == 16 * 16 * 3 * 3 + 3


@pytest.mark.parametrize("entry", **ids(SCHEDULERS))
def test_each_scheduler_is_built_and_steps(entry: Entry) -> None:
    optimizer = {"name": "SGD", "lr": 0.01, "momentum": 0.9}
    command, _ = validate_command(small(optimizer=optimizer, scheduler=call(entry)))
    assert command.scheduler is not None and command.scheduler.name == entry.name


@pytest.mark.parametrize("entry", **ids(IMAGE_OPS))
def test_each_image_op_runs_on_a_real_image(entry: Entry) -> None:
    # The resize and convert after it bring every op's output back to one shape and mode.
    ops = [{entry.name: entry.example or True}, {"resize": {"size": [16, 16]}}, {"convert": {"mode": "RGB"}}]
    _, report = validate_command(small(image_ops=ops, transform={"ToTensor": True}))
    assert report.input_shape == (3, 16, 16)


def transform_context(entry: Entry) -> dict[str, Any]:
    """Place a transform where its input type is right; a Resize after it fixes the size (and is kept
    for evaluation), so size-changing random transforms pass the training/evaluation shape check."""
    params = entry.example or True
    fix = ("CenterCrop", {"size": 16}) if entry.name == "Resize" else ("Resize", {"size": [16, 16]})
    if entry.name == "ToPILImage":
        return {"ToTensor": True, "ToPILImage": True, "PILToTensor": True,
                "ConvertImageDtype": {"dtype": "torch.float32"}, fix[0]: fix[1]}
    if entry.info.get("to_tensor"):
        return {entry.name: params, fix[0]: fix[1], "ConvertImageDtype": {"dtype": "torch.float32"}}
    if entry.info.get("input") == "tensor":
        return {"ToTensor": True, entry.name: params, fix[0]: fix[1]}
    return {entry.name: params, fix[0]: fix[1], "ToTensor": True}


@pytest.mark.parametrize("entry", **ids(TRANSFORMS))
def test_each_transform_runs_on_a_real_image(entry: Entry) -> None:
    _, report = validate_command(small(transform=transform_context(entry)))
    assert report.input_shape[1:] == (16, 16)


def layer_context(entry: Entry) -> list[dict[str, Any]]:
    """Four channels in (so GroupNorm, PixelShuffle and ChannelShuffle fit), reshaped to the layer's rank."""
    layers = [{"name": "Conv2d", "in_channels": "auto", "out_channels": 4, "kernel_size": 1}]
    if entry.info.get("rank") == 3:
        layers.append({"name": "Flatten", "start_dim": 2})
    if entry.info.get("rank") == 5:
        layers.append({"name": "Unflatten", "dim": 1, "unflattened_size": [1, 4]})
    return [*layers, call(entry), *HEAD]


@pytest.mark.parametrize("entry", **ids(LAYERS))
def test_each_layer_builds_with_auto_sizes_and_trains_a_step(entry: Entry) -> None:
    _, report = validate_command(small(model={"layers": layer_context(entry)}))
    assert report.output_shape == (3,)
    assert all("auto" not in layer.values() and "n_labels" not in layer.values() for layer in report.layers)


def test_image_ops_offer_nothing_that_writes_shows_or_is_private() -> None:
    forbidden = {"save", "show", "thumbnail", "paste", "putdata", "putpixel", "close", "load", "frombytes", "point"}
    assert not forbidden & set(IMAGE_OPS.names())
    assert all(not name.startswith("_") for r in (IMAGE_OPS, TRANSFORMS, LAYERS, LOSSES) for name in r.names())


def test_registries_refuse_duplicates_and_name_close_matches() -> None:
    registry = Registry("thing")
    registry.add("Alpha", dict)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("Alpha", list)
    with pytest.raises(ValueError, match="did you mean 'Alpha'"):
        registry.get("Alpah")


def test_symbols_are_the_allow_list_of_the_seed_spellings() -> None:
    from PIL import Image

    assert SYMBOLS["Image.ANTIALIAS"] is Image.Resampling.LANCZOS
    assert SYMBOLS["Image.FLIP_LEFT_RIGHT"] is Image.Transpose.FLIP_LEFT_RIGHT
    assert all(not name.startswith(("os.", "sys.", "builtins", "__")) for name in SYMBOLS)


def test_torchvision_model_preset_validates_with_its_head_sized_to_the_labels() -> None:
    _, report = validate_command(small(model={"preset": "mobilenet_v3_small"}))
    assert report.output_shape == (3,) and report.memory["activations"] > 0


def test_one_hot_losses_take_class_indices_like_the_others() -> None:
    loss = LOSSES.get("BCEWithLogitsLoss").target(reduction="sum")
    indices = torch.tensor([0, 2])
    expected = torch.nn.BCEWithLogitsLoss(reduction="sum")(torch.zeros(2, 3), torch.eye(3)[indices])
    assert torch.allclose(loss(torch.zeros(2, 3), indices), expected)


def test_evaluation_keeps_fixed_steps_that_follow_a_random_one() -> None:
    from PIL import Image

    from models.preprocess import build_preprocess

    preprocess = build_preprocess([{"resize": {"size": [8, 8]}}], {"RandomHorizontalFlip": True, "ToTensor": True})
    assert preprocess.augment and preprocess.without_augmentation()(Image.new("RGB", (20, 20))).shape == (3, 8, 8)
