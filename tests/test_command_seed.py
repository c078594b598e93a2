"""The older project's commands (../shared/seed-commands/) are accepted unchanged and normalized."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from models.command import Command
from models.errors import CommandError
from models.seed import SeedTestRequest, is_seed_spelling, normalize_command
from models.validation import validate_command
from tests.helpers import seed_commands_dir

SEEDS = seed_commands_dir()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seed_train() -> dict[str, Any]:
    path = SEEDS / "train.json"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return json.loads(path.read_text())


def test_seed_train_command_validates_unchanged(seed_train: dict[str, Any]) -> None:
    command, report = validate_command(copy.deepcopy(seed_train))
    assert command.steps == 100 and command.batch_size == 4
    assert command.label_names() == seed_train["label_names"]
    assert command.model.preset is None and len(command.model.layers or []) == 15
    # The explicit 111392 is right for 500x500 images: 32 channels of 59x59.
    assert report.input_shape == (3, 500, 500) and report.output_shape == (9,)
    assert report.layers[10]["in_features"] == 111392 and report.layers[14]["out_features"] == 9
    assert any("target_transform" in note for note in report.notes)
    assert report.parameters > 13_000_000 and report.step_memory_bytes > report.parameters * 8


def test_seed_wrong_in_features_is_refused_naming_the_layer(seed_train: dict[str, Any]) -> None:
    raw = copy.deepcopy(seed_train)
    raw["model"]["layers"][10]["in_features"] = 111000
    with pytest.raises(CommandError) as caught:
        validate_command(raw)
    assert [str(p) for p in caught.value.problems] == [
        'model.layers[10].in_features: Linear: in_features is 111000 but the previous layer gives 111392 '
        'features (shape (111392,)); use "auto"']


def test_seed_problems_name_the_seed_fields() -> None:
    raw = {"model_name": "m", "label_names": ["a", "a"], "n_epoch": 0, "n_labels": 3,
           "target_transform": {"ToTensr": True}, "model": {"name": "lenett"}}
    with pytest.raises(CommandError) as caught:
        validate_command(raw)
    paths = {p.path for p in caught.value.problems}
    assert {"label_names", "n_epoch", "n_labels", "target_transform.ToTensr", "model.name"} <= paths


def test_normalize_command_maps_the_seed_spelling_to_ours(seed_train: dict[str, Any]) -> None:
    ours = normalize_command(seed_train)
    assert not is_seed_spelling(ours)
    assert ours["steps"] == 100 and ours["labels"] == seed_train["label_names"]
    assert "n_labels" not in ours and "target_transform" not in ours and "name" not in ours["model"]
    assert Command.model_validate(ours).steps == 100
    assert normalize_command(ours) == ours  # our spelling passes through


def test_seed_model_name_is_a_preset() -> None:
    ours = normalize_command({"model_name": "m", "label_names": ["a", "b"], "model": {"name": "resnet18"}})
    assert ours["model"] == {"preset": "resnet18"}


def test_seed_right_n_labels_is_accepted_and_wrong_refused() -> None:
    assert "n_labels" not in normalize_command({"model_name": "m", "label_names": ["a", "b"], "n_labels": 2})
    with pytest.raises(CommandError, match="n_labels: is 5 but label_names has 2"):
        normalize_command({"model_name": "m", "label_names": ["a", "b"], "n_labels": 5})


def test_seed_test_request_is_understood() -> None:
    path = SEEDS / "test.json"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    request = SeedTestRequest.model_validate(json.loads(path.read_text()))
    assert request.model_name == "american_dog_species" and request.limit == 200 and request.ids == []


def test_command_model_takes_the_seed_spelling_as_the_flow_parameter_does(seed_train: dict[str, Any]) -> None:
    # Prefect validates a flow run's parameters with Command itself: a seed dict posted to the deployment.
    direct = Command.model_validate(copy.deepcopy(seed_train))
    checked, _ = validate_command(copy.deepcopy(seed_train))
    assert direct == checked and direct.steps == 100 and direct.model.layers is not None
    with pytest.raises(ValueError, match="n_labels: is 4 but label_names has 9 names"):
        Command.model_validate({**seed_train, "n_labels": 4})
    with pytest.raises(ValueError, match="n_epohc"):
        Command.model_validate({**seed_train, "n_epohc": 4})
