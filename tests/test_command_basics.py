"""The command schema and its registries: valid commands pass the dry run, mistakes are named."""

from __future__ import annotations

import pytest

from models.defaults import demo_command
from models.errors import CommandError
from models.validation import validate_command


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(CommandError) as caught:
        validate_command(raw)
    return [str(p) for p in caught.value.problems]


def test_demo_command_validates_with_a_dry_run() -> None:
    command, report = validate_command(demo_command())
    assert command.label_names() == ["circle", "square", "triangle", "star"]
    assert report.input_shape == (3, 32, 32)
    assert report.output_shape == (4,)
    assert report.parameters > 1000


def test_rejects_unknown_field_with_a_hint() -> None:
    found = problems_of({"model_name": "m", "labels": ["a", "b"], "batchsize": 4})
    assert any(p.startswith("batchsize:") and "batch_size" in p for p in found)


def test_rejects_unknown_optimizer_naming_close_ones() -> None:
    found = problems_of({"model_name": "m", "labels": ["a", "b"], "optimizer": {"name": "SDG", "lr": 0.1}})
    assert any(p.startswith("optimizer.name:") and "'SGD'" in p for p in found)


def test_rejects_optimizer_parameter_not_in_signature() -> None:
    optimizer = {"name": "SGD", "lr": 0.1, "momentun": 0.9}
    found = problems_of({"model_name": "m", "labels": ["a", "b"], "optimizer": optimizer})
    # The path names the parameter itself since the registries check parameters one by one.
    assert any(p.startswith("optimizer.momentun:") and "'momentum'" in p for p in found)


def test_rejects_wrong_explicit_layer_size_naming_the_layer() -> None:
    layers = [{"name": "Flatten"}, {"name": "Linear", "in_features": 10, "out_features": "n_labels"}]
    found = problems_of({"model_name": "m", "labels": ["a", "b"], "model": {"layers": layers}})
    assert any(p.startswith("model.layers[1].in_features") and "3072" in p for p in found)


def test_auto_sizes_resolve_from_the_probe() -> None:
    layers = [{"name": "Flatten"}, {"name": "Linear", "in_features": "auto", "out_features": "n_labels"}]
    _, report = validate_command({"model_name": "m", "labels": ["a", "b", "c"], "model": {"layers": layers}})
    assert report.layers[1] == {"name": "Linear", "in_features": 3 * 32 * 32, "out_features": 3}


def test_rejects_duplicate_labels() -> None:
    found = problems_of({"model_name": "m", "labels": ["a", "a"]})
    assert any(p.startswith("labels:") and "'a'" in p for p in found)
