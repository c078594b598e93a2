"""One validation pass over a command: schema, every registry name and parameter, then a dry run.

Sections are checked independently, so a schema error in one does not hide an unknown name in another:
every problem found is raised together as a CommandError, each with its field path.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from models.catalog import IMAGE_OPS, LOSSES, OPTIMIZERS, SCHEDULERS, TRANSFORMS
from models.command import Command
from models.dryrun import PROBE_IMAGE_SIDE, DryRunReport, dry_run
from models.errors import CommandError, Problem, did_you_mean, join_path
from models.network import PRESETS, BuiltNetwork, build_layers, check_layer_specs, preset_layers
from models.preprocess import MAX_PREPROCESS_INT, check_value
from models.seed import SEED_KEYS, is_seed_spelling, normalize_seed, seed_path
from models.zoo import ZOO_NAMES, is_zoo_model, weights_problem

__all__ = ["PROBE_IMAGE_SIDE", "DryRunReport", "build_network", "network_layers", "parse_command",
           "validate_command", "validate_names"]

def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names a model accepts at `loc` (for "did you mean" on unknown keys)."""
    model: Any = Command
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = next((a for a in (info.annotation, *_flatten(info.annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _flatten(annotation: Any) -> list[Any]:
    out = []
    for arg in get_args(annotation):
        out += [arg, *_flatten(arg)]
    return out


def _schema_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        message = re.sub(r"^(Value|Assertion) error, ", "", err["msg"])
        if err["type"] == "extra_forbidden":
            choices = _fields_at(loc[:-1]) + (list(SEED_KEYS) if len(loc) == 1 else [])
            message = f"unknown field{did_you_mean(str(loc[-1]), choices)}; expected one of {_fields_at(loc[:-1])}"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif "found" not in message:
            message = f"{message}; found {err.get('input')!r}"[:300]
        problems.append(Problem(join_path(*loc), message))
    return problems


def parse_command(raw: Any) -> Command:
    """Schema only (no names, no dry run). Raises CommandError with every schema problem."""
    if not isinstance(raw, dict):
        raise CommandError([Problem("", f"a command is a JSON/YAML object; found {type(raw).__name__}")])
    try:
        return Command.model_validate(raw)
    except ValidationError as exc:
        raise CommandError(_schema_problems(exc)) from None


def _salvage(raw: dict[str, Any], problems: list[Problem]) -> Command | None:
    """The command with every section that failed the schema replaced by its default, so the other
    sections can still be checked and dry-run. Never returned to the user."""
    broken = {_section(p.path) for p in problems}
    kept = {k: v for k, v in raw.items() if k not in broken and k in Command.model_fields}
    kept.setdefault("model_name", "placeholder")
    labels = raw.get("labels")
    # Keep the label count where it is readable, so layer sizes given as numbers are still checked.
    count = len(labels) if isinstance(labels, list) and 2 <= len(labels) <= 10_000 else 2
    kept.setdefault("labels", [f"label{i}" for i in range(count)])
    try:
        return Command.model_validate(kept)
    except ValidationError:
        return None


def _section(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _check_call(raw: Any, registry: Any, path: str) -> list[Problem]:
    if not isinstance(raw, dict) or "name" not in raw:
        return []  # the schema reports the shape
    unknown = registry.unknown(raw["name"], f"{path}.name")
    if unknown:
        return [unknown]
    params = {k: v for k, v in raw.items() if k != "name"}
    return _with_values(registry.get(raw["name"]).check(params, path), params, path, None)


def _with_values(problems: list[Problem], params: dict[str, Any], path: str, max_int: int | None) -> list[Problem]:
    """Add value problems (symbols, code-like strings, sizes) for parameters not already reported."""
    flagged = {p.path for p in problems}
    return problems + [p for k, v in params.items() if f"{path}.{k}" not in flagged
                       for p in check_value(v, f"{path}.{k}", max_int)]


def _check_op(registry: Any, name: Any, raw: Any, path: str) -> list[Problem]:
    unknown = registry.unknown(name, path)
    if unknown:
        return [unknown]
    if not isinstance(raw, dict):
        return []  # true, or a shape error the schema reports
    entry = registry.get(name)
    problems = _with_values(entry.check(raw, path), raw, path, MAX_PREPROCESS_INT)
    for key, allowed in entry.info.get("choices", {}).items():
        value = raw.get(key)
        plain = value.strip("'\"") if isinstance(value, str) else value
        if key in raw and plain not in allowed:
            problems.append(Problem(f"{path}.{key}", f"expected one of {list(allowed)}, found {value!r}"
                                                     f"{did_you_mean(str(plain), allowed)}"))
    return problems


def _check_preprocess(raw: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    ops = raw.get("image_ops")
    for index, spec in enumerate(ops if isinstance(ops, list) else []):
        if not isinstance(spec, dict) or len(spec) != 1:
            found = sorted(spec) if isinstance(spec, dict) else repr(spec)[:100]
            problems.append(Problem(f"image_ops[{index}]", f"expected one {{op: params}} pair; found {found}"))
            continue
        ((name, params),) = spec.items()
        problems += _check_op(IMAGE_OPS, name, params, f"image_ops[{index}].{name}")
    transform = raw.get("transform")
    for name, params in (transform.items() if isinstance(transform, dict) else []):
        problems += _check_op(TRANSFORMS, name, params, f"transform.{name}")
    return problems


def _check_model(raw: dict[str, Any]) -> list[Problem]:
    model = raw.get("model")
    if not isinstance(model, dict):
        return []
    preset, layers = model.get("preset"), model.get("layers")
    if isinstance(preset, str) and preset not in PRESETS and preset not in ZOO_NAMES:
        valid = [*PRESETS, *ZOO_NAMES]
        return [Problem("model.preset", f"unknown preset {preset!r}{did_you_mean(preset, valid)}; "
                                        f"expected one of {valid}")]
    problems = check_layer_specs(layers) if isinstance(layers, list) else []
    weights = model.get("weights")
    if isinstance(weights, str) and weights:
        problem = weights_problem(weights, preset if isinstance(preset, str) and is_zoo_model(preset) else None)
        problems += [Problem("model.weights", problem)] if problem else []
    return problems


def static_problems(raw: dict[str, Any]) -> list[Problem]:
    """Every registry name and parameter, read straight from the raw command (schema errors or not)."""
    return [
        *_check_call(raw.get("criterion"), LOSSES, "criterion"),
        *_check_call(raw.get("optimizer"), OPTIMIZERS, "optimizer"),
        *_check_call(raw.get("scheduler"), SCHEDULERS, "scheduler"),
        *_check_preprocess(raw),
        *_check_model(raw),
    ]


def validate_names(command: Command) -> None:
    problems = static_problems(command.model_dump(mode="json"))
    if problems:
        raise CommandError(problems)


def network_layers(command: Command) -> list[dict[str, Any]]:
    if command.model.layers is not None:
        return command.model.layers
    return preset_layers(command.model.preset or "tiny_cnn")


def build_network(command: Command, input_shape: tuple[int, ...]) -> BuiltNetwork:
    return build_layers(network_layers(command), input_shape, len(command.labels))


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def check_command(raw: Any) -> tuple[Command | None, DryRunReport | None, list[Problem]]:
    """The whole pass without raising: (command, report, problems); command and report are None on problems."""
    if not isinstance(raw, dict):
        return None, None, [Problem("", f"a command is a JSON/YAML object; found {type(raw).__name__}")]
    notes: list[str] = []
    problems: list[Problem] = []
    seed = is_seed_spelling(raw)
    if seed:
        normalized = normalize_seed(raw)
        raw, notes, problems = normalized.command, normalized.notes, list(normalized.problems)
    command = None
    try:
        command = Command.model_validate(raw)
    except ValidationError as exc:
        problems += _schema_problems(exc)
    problems += static_problems(raw)
    report = None
    runnable = command or _salvage(raw, problems)
    if runnable is not None:
        report, found = dry_run(runnable, skip={_section(p.path) for p in problems} - {"labels", "model_name"})
        problems += found
    if seed:
        problems = [Problem(seed_path(p.path), p.message) for p in problems]
    if problems or command is None or report is None:
        return None, None, _unique(problems) or [Problem("", "the command could not be dry-run")]
    report.notes = notes + report.notes
    return command, report, []


def validate_command(raw: Any) -> tuple[Command, DryRunReport]:
    """Parse (either spelling), check every name, dry-run. Raises CommandError listing every problem found."""
    command, report, problems = check_command(raw)
    if problems or command is None or report is None:
        raise CommandError(problems or [Problem("", "the command could not be checked")])
    return command, report
