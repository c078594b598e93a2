"""One validation pass over a command: schema, every registry name, then a dry run.

All problems are gathered and raised together as a CommandError, each with its field path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from pydantic import ValidationError

from models.catalog import LOSSES, OPTIMIZERS, SCHEDULERS
from models.command import Command, NamedCall
from models.errors import CommandError, Problem, did_you_mean, join_path
from models.network import BuiltNetwork, NetworkError, build_layers, count_parameters, preset_layers
from models.preprocess import Preprocess, build_image_op, build_transform, call_params

PROBE_IMAGE_SIDE = 224  # the probe's size when no image op fixes one


@dataclass
class DryRunReport:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: int
    step_memory_bytes: int
    layers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "parameters": self.parameters,
            "step_memory_mb": round(self.step_memory_bytes / 2**20, 2),
        }


def _pydantic_problems(exc: ValidationError, fields: list[str]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = join_path(*err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown field{did_you_mean(str(err['loc'][-1]), fields)}"
        elif "input" in err and err["type"] != "missing":
            message = f"{message}; found {err['input']!r}"[:300]
        problems.append(Problem(path, message))
    return problems


def parse_command(raw: Any) -> Command:
    if not isinstance(raw, dict):
        raise CommandError([Problem("", f"a command is a JSON/YAML object; found {type(raw).__name__}")])
    try:
        return Command.model_validate(raw)
    except ValidationError as exc:
        raise CommandError(_pydantic_problems(exc, list(Command.model_fields))) from None


def _check_call(call: NamedCall | None, registry: Any, path: str, problems: list[Problem]) -> None:
    if call is None:
        return
    if call.name not in registry:
        problems.append(Problem(f"{path}.name", f"unknown {registry.kind} {call.name!r}"
                                f"{did_you_mean(call.name, registry.names())}"))
        return
    try:
        registry.get(call.name).bind(call_params(call.params()))
    except (TypeError, ValueError) as exc:
        problems.append(Problem(path, f"{call.name}: {exc}"))


def _check_preprocess(command: Command, problems: list[Problem]) -> None:
    for index, spec in enumerate(command.image_ops):
        if len(spec) != 1:
            problems.append(Problem(f"image_ops[{index}]", f"expected one {{op: params}} pair; found keys {sorted(spec)}"))
            continue
        ((name, params),) = spec.items()
        try:
            build_image_op(name, params)
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"image_ops[{index}].{name}", str(exc)))
    for name, params in command.transform.items():
        try:
            build_transform(name, params)
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"transform.{name}", str(exc)))


def validate_names(command: Command) -> None:
    problems: list[Problem] = []
    _check_call(command.criterion, LOSSES, "criterion", problems)
    _check_call(command.optimizer, OPTIMIZERS, "optimizer", problems)
    _check_call(command.scheduler, SCHEDULERS, "scheduler", problems)
    _check_preprocess(command, problems)
    if problems:
        raise CommandError(problems)


def probe_input(preprocess: Preprocess) -> torch.Tensor:
    image = Image.new("RGB", (PROBE_IMAGE_SIDE, PROBE_IMAGE_SIDE), (127, 64, 200))
    return preprocess.without_augmentation()(image)


def network_layers(command: Command) -> list[dict[str, Any]]:
    if command.model.layers is not None:
        return command.model.layers
    return preset_layers(command.model.preset or "tiny_cnn")


def build_network(command: Command, input_shape: tuple[int, ...]) -> BuiltNetwork:
    return build_layers(network_layers(command), input_shape, len(command.labels))


def dry_run(command: Command) -> DryRunReport:
    """Push a synthetic image through everything, one forward and backward pass on a batch of two."""
    from models.preprocess import build_preprocess

    try:
        preprocess = build_preprocess(command.image_ops, command.transform)
        sample = probe_input(preprocess)
    except Exception as exc:  # any failure of the user's preprocessing is the user's to fix
        raise CommandError([Problem("image_ops/transform", f"preprocessing a probe image failed: {exc}")]) from None
    try:
        built = build_network(command, tuple(sample.shape))
    except NetworkError as exc:
        raise CommandError(exc.problems) from None
    batch = torch.stack([sample, sample])
    targets = torch.tensor([0, len(command.labels) - 1])
    loss_fn = LOSSES.get(command.criterion.name).target(**call_params(command.criterion.params()))
    try:
        loss = loss_fn(built.module.train()(batch), targets)
        loss.backward()
    except Exception as exc:
        raise CommandError([Problem("criterion", f"{command.criterion.name} on the network output "
                                                  f"{tuple(built.output_shape)} failed: {exc}")]) from None
    optimizer_cls = OPTIMIZERS.get(command.optimizer.name).target
    try:
        optimizer_cls(built.module.parameters(), **call_params(command.optimizer.params()))
    except Exception as exc:
        raise CommandError([Problem("optimizer", f"{command.optimizer.name}: {exc}")]) from None
    n_params = count_parameters(built.module)
    activation_bytes = batch.numel() * 4 * max(len(built.layers), 1)
    per_sample = activation_bytes / 2 * command.batch_size
    memory = int(n_params * 4 * 4 + per_sample)  # weights, grads, two optimizer moments + activations
    return DryRunReport(tuple(sample.shape), built.output_shape, n_params, memory, built.layers)


def validate_command(raw: Any) -> tuple[Command, DryRunReport]:
    """Parse, check every name, dry-run. Raises CommandError listing every problem found."""
    command = parse_command(raw)
    validate_names(command)
    return command, dry_run(command)
