"""The older project's command spelling, accepted unchanged and normalized into ours.

Seed spelling                      ours
  n_epoch (random-batch steps)  →  steps
  label_names                   →  labels
  n_labels                      →  derived from the labels (0 or the right count accepted)
  target_transform              →  dropped, with a note: targets are class indices, nothing to transform
  model.name "" + model.layers  →  model.layers;  model.name "resnet18" → model.preset
Everything else (model_name, criterion, optimizer, batch_size, image_ops, transform) is spelled alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.catalog import TRANSFORMS
from models.errors import CommandError, Problem
from models.preprocess import check_value

SEED_KEYS = ("n_epoch", "n_labels", "label_names", "target_transform")
# Our path → the seed's, so problems name the field the user actually wrote.
SEED_PATHS = {"steps": "n_epoch", "labels": "label_names", "model.preset": "model.name"}


@dataclass
class SeedNormalization:
    command: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_seed_spelling(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    model = raw.get("model")
    return any(key in raw for key in SEED_KEYS) or (isinstance(model, dict) and "name" in model)


def _rename(command: dict[str, Any], old: str, new: str, problems: list[Problem]) -> None:
    if old not in command:
        return
    if new in command:
        problems.append(Problem(old, f"give {old} (seed spelling) or {new}, not both"))
    command[new] = command.pop(old)


def _check_n_labels(command: dict[str, Any], problems: list[Problem]) -> None:
    given = command.pop("n_labels", None)
    labels = command.get("labels")
    if given is None or given == 0:  # the seed's 0 means "count them"
        return
    if not isinstance(given, int) or isinstance(given, bool):
        problems.append(Problem("n_labels", f"expected an integer (or leave it out: it is derived), found {given!r}"))
    elif isinstance(labels, list) and given != len(labels):
        problems.append(Problem("n_labels", f"is {given} but label_names has {len(labels)} names; n_labels is "
                                            "derived from label_names, so give 0 or leave it out"))


def _target_transform(command: dict[str, Any], result: SeedNormalization) -> None:
    if "target_transform" not in command:
        return
    spec = command.pop("target_transform")
    if not isinstance(spec, dict):
        result.problems.append(Problem("target_transform", f"expected {{TransformName: params or true}}, "
                                                           f"found {spec!r}"[:300]))
        return
    for name, params in spec.items():
        path = f"target_transform.{name}"
        unknown = TRANSFORMS.unknown(name, path)
        if unknown:
            result.problems.append(unknown)
        elif isinstance(params, dict):  # ignored, but a mistake or an attack in it is still the user's to hear
            result.problems += TRANSFORMS.get(name).check(params, path)
            result.problems += [p for k, v in params.items() for p in check_value(v, f"{path}.{k}")]
        elif params is not True:
            result.problems.append(Problem(path, f"expected an object of parameters or true, found {params!r}"[:300]))
    if spec:
        result.notes.append(f"target_transform {sorted(spec)} ignored: targets are class indices, which need "
                            "no transform (one-hot targets are made for the losses that want them)")


def _model(command: dict[str, Any], problems: list[Problem]) -> None:
    model = command.get("model")
    if not isinstance(model, dict) or "name" not in model:
        return
    model = dict(model)
    name = model.pop("name")
    if name not in ("", None):
        if "preset" in model:
            problems.append(Problem("model.name", "give model.name (seed spelling) or model.preset, not both"))
        model["preset"] = name
    command["model"] = model


def normalize_seed(raw: dict[str, Any]) -> SeedNormalization:
    """Seed spelling → our spelling, with the problems only the seed spelling can have and notes."""
    result = SeedNormalization(dict(raw))
    command = result.command
    _rename(command, "n_epoch", "steps", result.problems)
    _rename(command, "label_names", "labels", result.problems)
    _check_n_labels(command, result.problems)
    _target_transform(command, result)
    _model(command, result.problems)
    return result


def normalize_command(raw: dict[str, Any]) -> dict[str, Any]:
    """Either spelling → ours (a plain dict, not yet validated). Raises CommandError for seed-only mistakes."""
    if not is_seed_spelling(raw):
        return dict(raw)
    result = normalize_seed(raw)
    if result.problems:
        raise CommandError(result.problems)
    return result.command


def seed_path(path: str) -> str:
    """Name a problem by the seed's field where the seed spelling was used."""
    for ours, theirs in SEED_PATHS.items():
        if path == ours or path.startswith((f"{ours}.", f"{ours}[")):
            return theirs + path[len(ours):]
    return path


class SeedTestRequest(BaseModel):
    """The older project's /test request (seed-commands/test.json): evaluate the latest bundle of model_name
    on up to `limit` images of its labels, optionally only those with the given `ids`. Its training keys
    describe the model, which the bundle already records, so they are accepted and ignored."""

    model_config = ConfigDict(extra="forbid")
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="The model to evaluate.")
    ids: list[str] = Field(default_factory=list, description="Only these image keys; empty means any.")
    limit: int = Field(default=200, gt=0, le=1_000_000, description="At most this many images.")
    label_names: list[str] | None = Field(default=None, description="Restrict to these labels of the model.")
    n_labels: int | None = Field(default=None, description="Ignored (derived).")
    criterion: dict[str, Any] | None = Field(default=None, description="Ignored: the bundle knows.")
    image_ops: list[Any] | None = Field(default=None, description="Ignored: the bundle records its preprocessing.")
    transform: dict[str, Any] | None = Field(default=None, description="Ignored: the bundle records it.")
    target_transform: dict[str, Any] | None = Field(default=None, description="Ignored.")
    model: dict[str, Any] | None = Field(default=None, description="Ignored: the bundle records the network.")


def accept_seed_spelling(raw: Any) -> Any:
    """For Command's before-validator: a dict in the seed spelling becomes ours, seed-only mistakes raise."""
    if not is_seed_spelling(raw):
        return raw
    result = normalize_seed(raw)
    if result.problems:
        raise ValueError("; ".join(str(problem) for problem in result.problems))
    return result.command
