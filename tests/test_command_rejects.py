"""Each kind of mistake is refused with its field path, what was expected and what was found."""

from __future__ import annotations

from typing import Any

import pytest

from models.errors import CommandError
from models.validation import validate_command
from tests.test_command_registries import HEAD, small

pytestmark = pytest.mark.usefixtures("one_thread")


def problems(raw: Any) -> list[str]:
    with pytest.raises(CommandError) as caught:
        validate_command(raw)
    return [str(p) for p in caught.value.problems]


def one(raw: Any, path: str, *needles: str) -> str:
    """The problem at `path`, which must mention every needle."""
    found = [p for p in problems(raw) if p.startswith(f"{path}:")]
    assert found, f"no problem at {path}: {problems(raw)}"
    assert all(n in found[0] for n in needles), found[0]
    return found[0]


def test_rejects_a_command_that_is_not_an_object() -> None:
    assert problems(["model_name"]) == ["a command is a JSON/YAML object; found list"]


def test_rejects_unknown_nested_field_with_a_hint() -> None:
    one(small(acquire={"per_lable": 3}), "acquire.per_lable", "'per_label'")


def test_rejects_missing_required_field() -> None:
    raw = small()
    del raw["model_name"]
    one(raw, "model_name", "required")


def test_rejects_out_of_range_number_saying_what_was_found() -> None:
    one(small(batch_size=0), "batch_size", "greater than 0", "found 0")


@pytest.mark.parametrize("field, value, path, hint", [
    ("criterion", {"name": "CrossEntropy"}, "criterion.name", "'CrossEntropyLoss'"),
    ("optimizer", {"name": "Adamw"}, "optimizer.name", "'AdamW'"),
    ("scheduler", {"name": "StepLr", "step_size": 2}, "scheduler.name", "'StepLR'"),
    ("transform", {"ToTensr": True}, "transform.ToTensr", "'ToTensor'"),
    ("image_ops", [{"resise": {"size": [8, 8]}}], "image_ops[0].resise", "'resize'"),
    ("model", {"layers": [{"name": "Conv2D"}, *HEAD]}, "model.layers[0].name", "'Conv2d'"),
    ("model", {"preset": "resnet19"}, "model.preset", "'resnet18'"),
])
def test_rejects_unknown_names_naming_the_closest(field: str, value: Any, path: str, hint: str) -> None:
    one(small(**{field: value}), path, "unknown", hint)


def test_rejects_unknown_parameter_with_a_hint() -> None:
    one(small(transform={"ToTensor": True, "Normalize": {"meen": [0.5], "std": [0.5]}}),
        "transform.Normalize.meen", "'mean'")


def test_rejects_missing_required_parameter() -> None:
    one(small(scheduler={"name": "StepLR"}), "scheduler", "step_size")


def test_rejects_wrongly_typed_parameter() -> None:
    one(small(optimizer={"name": "SGD", "lr": "fast"}), "optimizer.lr", "expected a number", "'fast'")


def test_rejects_a_value_the_library_refuses_naming_the_parameter() -> None:
    one(small(optimizer={"name": "SGD", "lr": -1}), "optimizer.lr", "Invalid learning rate")


def test_rejects_a_value_outside_a_closed_set() -> None:
    one(small(image_ops=[{"convert": {"mode": "'RBG'"}}]), "image_ops[0].convert.mode", "'RGB'")


def test_rejects_unknown_symbol_naming_the_closest() -> None:
    one(small(image_ops=[{"resize": {"size": [8, 8], "resample": "Image.ANTIALIASS"}}]),
        "image_ops[0].resize.resample", "unknown symbol", "'Image.ANTIALIAS'")


def test_rejects_image_op_item_with_two_ops() -> None:
    one(small(image_ops=[{"resize": {"size": [8, 8]}, "convert": {"mode": "RGB"}}]), "image_ops[0]", "one {op")


def test_rejects_parameters_that_are_not_an_object() -> None:
    one(small(transform={"Resize": 40, "ToTensor": True}), "transform.Resize", "object of parameters or true")


def test_rejects_enormous_image_sizes_before_touching_an_image() -> None:
    one(small(image_ops=[{"resize": {"size": [100_000, 100_000]}}]), "image_ops[0].resize.size[0]", "at most 4096")


def test_rejects_transform_that_needs_a_tensor_before_to_tensor() -> None:
    one(small(transform={"Normalize": {"mean": [0.5], "std": [0.5]}, "ToTensor": True}),
        "transform.Normalize", "ToTensor before it")


def test_rejects_transforms_that_do_not_end_in_a_float_tensor() -> None:
    one(small(transform={"Resize": {"size": [8, 8]}}), "transform", "end in a tensor")
    one(small(transform={"PILToTensor": True}), "transform", "uint8", "ConvertImageDtype")


def test_rejects_random_step_that_changes_the_shape_only_in_training() -> None:
    one(small(transform={"ToTensor": True, "RandomResizedCrop": {"size": 12}}),
        "transform.RandomResizedCrop", "(3, 12, 12)", "(3, 32, 32)")


def test_rejects_wrong_explicit_channel_count_naming_the_layer() -> None:
    layers = [{"name": "Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3}, *HEAD]
    one(small(model={"layers": layers}), "model.layers[0].in_channels", "is 1", "gives 3 channels")


def test_rejects_auto_for_a_parameter_that_is_not_a_size() -> None:
    layers = [{"name": "Conv2d", "in_channels": "auto", "out_channels": 4, "kernel_size": "auto"}, *HEAD]
    one(small(model={"layers": layers}), "model.layers[0].kernel_size", '"auto" is only for sizes')


def test_rejects_network_whose_output_is_not_one_score_per_label() -> None:
    layers = [{"name": "Flatten"}, {"name": "Linear", "in_features": "auto", "out_features": 5}]
    one(small(model={"layers": layers}), "model.layers[1]", "(5,)", "expected (3,)")


def test_rejects_layer_that_fails_on_its_input_naming_it() -> None:
    layers = [{"name": "Flatten"}, {"name": "MaxPool2d", "kernel_size": 2}, *HEAD]
    one(small(model={"layers": layers}), "model.layers[1]", "MaxPool2d failed on input shape")


def test_rejects_a_network_too_large_to_build_before_allocating_it() -> None:
    layers = [{"name": "Flatten"}, {"name": "Linear", "in_features": "auto", "out_features": 1_000_000}, *HEAD[1:]]
    one(small(model={"layers": layers}), "model.layers", "parameters; expected at most")


def test_rejects_preset_and_layers_together() -> None:
    one(small(model={"preset": "lenet", "layers": HEAD}), "model", "either preset or layers")


def test_rejects_code_in_free_text() -> None:
    one(small(labels=["cat", "os.system('ls')"]), "labels[1].name", "looks like code")


def test_reports_every_problem_in_one_pass() -> None:
    raw = small(batch_size=-1, optimizer={"name": "SDG", "lr": 0.1}, scheduler={"name": "StepLR"},
                transform={"ToTensor": True, "Normalize": {"meen": [0.5], "std": [0.5]}}, epochz=3)
    raw["model"] = {"layers": [{"name": "Flatten"}, {"name": "Linear", "in_features": 10, "out_features": 3}]}
    paths = {p.split(":")[0] for p in problems(raw)}
    assert {"batch_size", "optimizer.name", "scheduler", "transform.Normalize.meen", "epochz"} <= paths


def test_reports_layer_sizes_alongside_schema_errors_elsewhere() -> None:
    raw = small(batch_size=0, criterion={"name": "CrossEntropyLos"})
    raw["model"] = {"layers": [{"name": "Flatten"}, {"name": "Linear", "in_features": 10, "out_features": 3}]}
    paths = {p.split(":")[0] for p in problems(raw)}
    assert {"batch_size", "criterion.name", "model.layers[1].in_features"} <= paths


def test_rejects_torchvision_model_that_cannot_take_the_image_size() -> None:
    one(small(model={"preset": "squeezenet1_1"}, image_ops=[{"resize": {"size": [8, 8]}}],
              transform={"ToTensor": True}), "model.preset", "(3, 8, 8)", "too small")
