"""The schema and its documentation: descriptions for the Prefect form, a reference that cannot drift,
and the CLI around them (`serptrain schema`, `serptrain validate`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from models.catalog import IMAGE_OPS, LOSSES, OPTIMIZERS, TRANSFORMS
from models.command import Command
from models.schema_doc import command_reference
from tests.helpers import seed_commands_dir

REPO = Path(__file__).resolve().parents[1]
SEED_TRAIN = seed_commands_dir() / "train.json"


pytestmark = pytest.mark.usefixtures("one_thread")


def properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from (("Command." + k, v) for k, v in schema["properties"].items())
    for name, sub in schema["$defs"].items():
        yield from ((f"{name}.{k}", v) for k, v in sub.get("properties", {}).items())


def test_every_schema_field_has_a_description() -> None:
    schema = Command.model_json_schema()
    missing = [name for name, prop in properties(schema) if not prop.get("description")]
    assert not missing


def test_schema_offers_the_registered_names_as_choices() -> None:
    schema = Command.model_json_schema()
    defs = schema["$defs"]
    assert defs["OptimizerCall"]["properties"]["name"]["enum"] == OPTIMIZERS.names()
    assert defs["LossCall"]["properties"]["name"]["enum"] == LOSSES.names()
    assert schema["properties"]["transform"]["propertyNames"]["enum"] == TRANSFORMS.names()
    assert schema["properties"]["image_ops"]["items"]["propertyNames"]["enum"] == IMAGE_OPS.names()
    preset = defs["ModelSpec"]["properties"]["preset"]["anyOf"]
    assert {"type": "null"} in preset and "resnet18" in preset[0]["enum"]


def test_command_is_a_usable_prefect_flow_parameter() -> None:
    from prefect.utilities.callables import parameter_schema

    def train(command: Command, store_url: str | None = None) -> None:
        """A stand-in flow signature."""

    schema = parameter_schema(train).model_dump_for_openapi()
    assert schema["properties"]["command"]["$ref"].endswith("/Command")
    assert "optimizer" in schema["definitions"]["Command"]["properties"]


def test_committed_reference_is_the_generated_one() -> None:
    committed = (REPO / "docs" / "command-reference.md").read_text(encoding="utf-8")
    assert committed == command_reference(), "run `make docs` (serptrain schema --markdown) and commit the result"


def test_committed_settings_reference_is_the_generated_one() -> None:
    from models.acquire_request import AcquireSettings
    from models.settings import Settings
    from models.settings_doc import settings_reference

    committed = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == settings_reference(), "run `make docs` (serptrain schema --settings) and commit the result"
    variables = [f"`SERPTRAIN_{name.upper()}`" for name in Settings.model_fields]
    variables += [f"`SERPTRAIN_ACQUIRE_{name.upper()}`" for name in AcquireSettings.model_fields]
    assert all(variable in committed for variable in variables)


def test_reference_names_every_registered_name() -> None:
    text = command_reference()
    assert all(f"`{name}`" in text for r in (LOSSES, OPTIMIZERS, TRANSFORMS, IMAGE_OPS) for name in r.names())


def test_schema_command_prints_json_schema_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == Command.model_json_schema()
    assert main(["schema", "--markdown"]) == 0
    assert capsys.readouterr().out == command_reference()


def test_validate_seed_file_exits_0_prints_command_and_report_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    if not SEED_TRAIN.is_file():
        pytest.skip(f"{SEED_TRAIN} is not here")
    file = tmp_path / "train.json"
    file.write_text(SEED_TRAIN.read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["command"]["steps"] == 100 and out["dry_run"]["output_shape"] == [9]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


def test_validate_bad_yaml_exits_2_listing_every_problem_without_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("model_name: m\nlabels: [a, b]\nbatch_size: 0\noptimizer: {name: SDG}\n"
                    "transform: {ToTensor: true, Normalise: true}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(file)]) == 2
    captured = capsys.readouterr()
    assert "3 problem(s)" in captured.err and "Traceback" not in captured.err + captured.out
    for needle in ("batch_size:", "optimizer.name:", "'SGD'", "transform.Normalise:", "'Normalize'"):
        assert needle in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
