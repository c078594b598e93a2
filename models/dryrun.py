"""The dry run: everything a training step does, on one synthetic image and a batch of two.

Each stage runs only when the sections it needs passed the static checks, and reports its failures as
problems with field paths instead of raising, so one validation pass names every mistake it can.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from models.catalog import LOSSES, OPTIMIZERS, SCHEDULERS
from models.command import Command, NamedCall
from models.errors import Problem
from models.network import BuiltNetwork, NetworkError, build_layers, preset_layers
from models.preprocess import MAX_PREPROCESS_INT, build_image_op, build_transform, call_params

PROBE_IMAGE_SIDE = 224  # the probe's size when no image op fixes one
# Words torch uses in its messages for parameters, to point at the field rather than the whole call.
_ALIASES = {"learning rate": "lr", "momentum": "momentum", "epsilon": "eps", "beta parameter": "betas",
            "weight_decay": "weight_decay", "step_size": "step_size", "gamma": "gamma"}


@dataclass
class DryRunReport:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: int
    step_memory_bytes: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)  # the estimate's parts, bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "parameters": self.parameters,
            "step_memory_mb": round(self.step_memory_bytes / 2**20, 2),
            "step_memory_parts_mb": {k: round(v / 2**20, 2) for k, v in self.memory.items()},
            "notes": list(self.notes),
        }


def _path_for(exc: BaseException, base: str, params: dict[str, Any]) -> str:
    message = str(exc)
    for key in params:
        if key in message:
            return f"{base}.{key}"
    for words, key in _ALIASES.items():
        if words in message.lower() and key in params:
            return f"{base}.{key}"
    return base


def _failure(exc: BaseException, path: str, what: str) -> Problem:
    return Problem(path, f"{what} failed: {type(exc).__name__}: {exc}"[:400])


def _apply_image_ops(command: Command, problems: list[Problem]) -> Image.Image | None:
    image = Image.new("RGB", (PROBE_IMAGE_SIDE, PROBE_IMAGE_SIDE), (127, 64, 200))
    for index, spec in enumerate(command.image_ops):
        ((name, raw),) = spec.items()
        path = f"image_ops[{index}].{name}"
        try:
            image = build_image_op(name, raw)(image)
        except Exception as exc:  # the user's op on a real image: report, never crash
            problems.append(_failure(exc, _path_for(exc, path, raw if isinstance(raw, dict) else {}),
                                     f"{name} on a {image.mode} {image.size} image"))
            return None
        if image.width * image.height > MAX_PREPROCESS_INT**2:
            problems.append(Problem(path, f"makes a {image.size} image; expected at most "
                                          f"{MAX_PREPROCESS_INT}x{MAX_PREPROCESS_INT} pixels"))
            return None
    return image


def _shape(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else getattr(value, "size", None)


def _apply_transforms(command: Command, image: Image.Image, problems: list[Problem]) -> torch.Tensor | None:
    value: Any = image
    steps: list[tuple[str, bool, Any, Any]] = []  # name, random, step, whether it changed the size
    for name, raw in command.transform.items():
        path = f"transform.{name}"
        try:
            entry, step = build_transform(name, raw)
            before, value = _shape(value), step(value)
        except Exception as exc:
            hint = " (it received a PIL image: put ToTensor before it?)" if isinstance(value, Image.Image) else ""
            problems.append(Problem(_path_for(exc, path, raw if isinstance(raw, dict) else {}),
                                    f"{name} failed: {type(exc).__name__}: {exc}{hint}"[:400]))
            return None
        steps.append((name, entry.random, step, before != _shape(value)))
    if not isinstance(value, torch.Tensor):
        problems.append(Problem("transform", f"the transforms must end in a tensor; they end in a "
                                             f"{type(value).__name__} (add ToTensor)"))
        return None
    if not value.is_floating_point():
        problems.append(Problem("transform", f"the transforms end in a {value.dtype} tensor; the network needs "
                                             'floats (add ConvertImageDtype or ToDtype with "torch.float32")'))
        return None
    return value if _same_without_augmentation(image, value, steps, problems) else None


def _same_without_augmentation(image: Image.Image, trained: torch.Tensor, steps: list[tuple[str, bool, Any, Any]],
                               problems: list[Problem]) -> bool:
    """Evaluation images skip the random steps: what they get must have the training images' shape."""
    value: Any = image
    for _, random, step, _ in steps:
        value = value if random else step(value)
    if isinstance(value, torch.Tensor) and value.shape == trained.shape:
        return True
    changer = next((name for name, random, _, changed in steps if random and changed), None)
    path = f"transform.{changer}" if changer else "transform"
    problems.append(Problem(path, f"training images come out {tuple(trained.shape)} but evaluation images, which "
                                  f"skip random steps, come out {_shape(value)}: give the random step a fixed "
                                  "output size or resize after it"))
    return False


def _model_path(command: Command) -> str:
    return "model.layers" if command.model.layers is not None else "model.preset"


def _network(command: Command, input_shape: tuple[int, ...], problems: list[Problem]) -> BuiltNetwork | None:
    n_labels = len(command.labels)
    try:
        layers = command.model.layers if command.model.layers is not None else preset_layers(
            command.model.preset or "tiny_cnn")
        built = build_layers(layers, input_shape, n_labels)
    except NetworkError as exc:
        problems += exc.problems
        return None
    except Exception as exc:  # a torchvision model that cannot take this input size, for one
        problems.append(_failure(exc, _model_path(command), f"building the network for input {input_shape}"))
        return None
    if built.output_shape != (n_labels,):
        last = (f"model.layers[{len(command.model.layers) - 1}]" if command.model.layers else "model.preset")
        problems.append(Problem(last, f"the network outputs shape {built.output_shape}; expected ({n_labels},), "
                                      'one score per label (end with a Linear whose out_features is "n_labels")'))
        return None
    return built


def _loss_step(command: Command, built: BuiltNetwork, sample: torch.Tensor, problems: list[Problem]) -> int:
    """Forward, loss and backward on a batch of two; returns the bytes of gradients kept."""
    call = command.criterion
    try:  # training mode behaves differently (batch norm, dropout): run it as training will
        output = built.module.train()(torch.stack([sample, sample]))
    except Exception as exc:
        problems.append(_failure(exc, _model_path(command), "a training-mode forward pass on a batch of two"))
        return 0
    try:
        criterion = LOSSES.get(call.name).target(**call_params(call.params()))
        targets = torch.tensor([0, len(command.labels) - 1])  # class indices, as the trainer gives every loss
        loss = criterion(output, targets)
        loss.backward()
    except Exception as exc:
        problems.append(_failure(exc, _path_for(exc, "criterion", call.params()),
                                 f"{call.name} on the network output {built.output_shape}"))
    return sum(p.numel() * p.element_size() for p in built.module.parameters())


def _construct(call: NamedCall, registry: Any, first: Any, path: str, problems: list[Problem]) -> Any:
    try:
        return registry.get(call.name).target(first, **call_params(call.params()))
    except Exception as exc:
        problems.append(_failure(exc, _path_for(exc, path, call.params()), call.name))
        return None


def _optimizer_and_scheduler(command: Command, built: BuiltNetwork, skip: set[str],
                             problems: list[Problem]) -> int:
    """Construct both and take one step of each; returns the optimizer state's bytes."""
    params = list(built.module.parameters())
    optimizer = None
    if "optimizer" not in skip:
        optimizer = _construct(command.optimizer, OPTIMIZERS, params, "optimizer", problems)
        if optimizer is not None:
            try:
                optimizer.step()
            except Exception as exc:
                problems.append(_failure(exc, _path_for(exc, "optimizer", command.optimizer.params()),
                                         f"{command.optimizer.name}.step()"))
    if command.scheduler is not None and "scheduler" not in skip:
        host = optimizer or torch.optim.SGD(params, lr=0.01, momentum=0.9)  # stand-in: still check the scheduler
        scheduler = _construct(command.scheduler, SCHEDULERS, host, "scheduler", problems)
        if scheduler is not None:
            try:
                is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                scheduler.step(1.0) if is_plateau else scheduler.step()
            except Exception as exc:
                problems.append(_failure(exc, "scheduler", f"{command.scheduler.name}.step()"))
    if optimizer is None:
        return 0
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if isinstance(t, torch.Tensor))


def _estimate(command: Command, built: BuiltNetwork, sample: torch.Tensor, grads: int, state: int) -> dict[str, int]:
    per_sample = built.activations // 2 * 4  # float32 layer outputs of one image, kept for backward
    return {
        "weights": built.parameters * 4, "gradients": grads, "optimizer_state": state,
        "activations": per_sample * command.batch_size * 2,  # outputs and their gradients
        "input_batch": sample.numel() * sample.element_size() * command.batch_size,
    }


def dry_run(command: Command, skip: set[str] | None = None) -> tuple[DryRunReport | None, list[Problem]]:
    """Run every stage whose sections are sound (`skip` names the top-level sections that are not)."""
    skip = skip or set()
    problems: list[Problem] = []
    if skip & {"image_ops", "transform"}:
        return None, problems
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):  # CPU only: never initialise CUDA
        warnings.simplefilter("ignore")  # torch's advice about step order is noise in a one-step probe
        torch.manual_seed(command.seed)
        image = _apply_image_ops(command, problems)
        sample = _apply_transforms(command, image, problems) if image is not None else None
        if sample is None or "model" in skip:
            return None, problems
        built = _network(command, tuple(sample.shape), problems)
        if built is None:
            return None, problems
        grads = _loss_step(command, built, sample, problems) if "criterion" not in skip else 0
        state = _optimizer_and_scheduler(command, built, skip, problems)
    memory = _estimate(command, built, sample, grads, state)
    report = DryRunReport(tuple(sample.shape), built.output_shape, built.parameters, sum(memory.values()),
                          built.layers, memory=memory)
    return report, problems
