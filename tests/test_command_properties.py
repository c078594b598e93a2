"""Random JSON and injection attempts: the validator returns a normalized command or raises CommandError,
never anything else, and nothing in a command is ever run."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.command import Command
from models.defaults import demo_command
from models.dryrun import DryRunReport
from models.errors import CommandError
from models.validation import validate_command
from tests.test_command_registries import small

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70), st.floats(-2, 2, allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["auto", "n_labels", "Image.ANTIALIAS", "'RGB'", "SGD",
                                                           "ToTensor", "resize", "Conv2d", "__class__"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


pytestmark = pytest.mark.usefixtures("one_thread")


def outcome(raw: Any) -> str:
    """'valid' or 'refused'; any other exception fails the test with its traceback."""
    try:
        command, report = validate_command(raw)
    except CommandError as exc:
        assert exc.problems and all(isinstance(str(p), str) for p in exc.problems)
        return "refused"
    assert isinstance(command, Command) and isinstance(report, DryRunReport)
    Command.model_validate(command.model_dump(mode="json"))  # the normalized command round-trips
    return "valid"


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a JSON value (dict values and list items)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        return found + [p for k, v in value.items() for p in paths_in(v, (*prefix, k))]
    if isinstance(value, list):
        return found + [p for i, v in enumerate(value) for p in paths_in(v, (*prefix, i))]
    return found


def replaced(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


@SETTINGS
@given(json_values)
def test_random_json_is_refused_cleanly(raw: Any) -> None:
    assert outcome(raw) in ("valid", "refused")


@SETTINGS
@given(st.data())
def test_mutated_commands_are_validated_or_refused_never_crash(data: st.DataObject) -> None:
    raw = small(model={"preset": "lenet"}, scheduler={"name": "StepLR", "step_size": 2})
    path = data.draw(st.sampled_from(paths_in(raw)))
    mutated = replaced(raw, path, data.draw(json_values))
    if data.draw(st.booleans()):
        mutated[data.draw(st.text(max_size=8))] = data.draw(json_values)
    assert outcome(mutated) in ("valid", "refused")


INJECTIONS = [
    "__import__('os').system('touch {marker}')",
    "os.system('touch {marker}')",
    "getattr(__builtins__, 'open')('{marker}', 'w')",
    "Image.open('{marker}')",
    "'RGB'); __import__('os').system('touch {marker}'); ('",
    "lambda: __import__('os')",
]
SEED_LIKE = {
    "model_name": "m", "label_names": ["cat", "dog"], "n_epoch": 2, "n_labels": 0,
    "criterion": {"name": "CrossEntropyLoss"}, "optimizer": {"name": "SGD", "lr": 0.01, "momentum": 0.9},
    "image_ops": [{"resize": {"size": [16, 16], "resample": "Image.ANTIALIAS"}}, {"convert": {"mode": "'RGB'"}}],
    "transform": {"ToTensor": True, "Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}},
    "target_transform": {"ToTensor": True},
    "model": {"name": "", "layers": [{"name": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3,
                                      "padding_mode": "zeros"}, *small()["model"]["layers"]]},
}


@pytest.fixture()
def nothing_may_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a command tried to run something: {args}")

    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.mark.parametrize("base", [pytest.param(demo_command(), id="ours"), pytest.param(SEED_LIKE, id="seed")])
def test_injection_in_any_string_value_or_key_is_refused(base: dict[str, Any], tmp_path: Path,
                                                         nothing_may_run: None) -> None:
    marker = tmp_path / "ran"
    assert outcome(copy.deepcopy(base)) == "valid"
    for index, path in enumerate(paths_in(base)):
        attack = INJECTIONS[index % len(INJECTIONS)].format(marker=marker)
        assert outcome(replaced(base, path, attack)) == "refused", path
        parent = base if len(path) == 1 else replaced(base, path, None)
        if isinstance(path[-1], str):  # the same string as a key next to this one
            holder = copy.deepcopy(parent)
            target = holder
            for part in path[:-1]:
                target = target[part]
            target[attack] = True
            assert outcome(holder) == "refused", (*path[:-1], attack)
    assert not marker.exists()
