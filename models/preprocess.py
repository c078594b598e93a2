"""Preprocessing built from a command: PIL image ops, then torchvision transforms.

Values are JSON; symbolic strings ("Image.ANTIALIAS", "'RGB'", "torch.float32") resolve through the
SYMBOLS allow-list and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from models.catalog import IMAGE_OPS, SYMBOLS, TRANSFORMS
from models.errors import Problem, did_you_mean, join_path
from models.registries import Entry

_QUOTED = re.compile(r"""^'([^'\\]*)'$|^"([^"\\]*)"$""")
# A dotted name is a symbol reference; it must be in SYMBOLS. A plain value is a word such as "reflect",
# "RGB", "I;16" or "mean". Anything else (calls, dunders, spaces, operators) is refused, never run.
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")
_PLAIN = re.compile(r"^[A-Za-z0-9_;:+\-]{0,64}$")
MAX_PREPROCESS_INT = 4096  # larger sizes would make the probe image (and every training image) enormous


def _unquote(value: str) -> str | None:
    quoted = _QUOTED.match(value)
    if not quoted:
        return None
    return quoted.group(1) if quoted.group(1) is not None else quoted.group(2)


def resolve_value(value: Any) -> Any:
    """JSON value → Python value: symbols and quoted strings resolved, lists become tuples where needed."""
    if isinstance(value, str):
        if value in SYMBOLS:
            return SYMBOLS[value]
        unquoted = _unquote(value)
        return value if unquoted is None else unquoted
    if isinstance(value, list):
        return [resolve_value(v) for v in value]
    if isinstance(value, dict):
        return {k: resolve_value(v) for k, v in value.items()}
    return value


def check_value(value: Any, path: str, max_int: int | None = None) -> list[Problem]:
    """Problems with a parameter value: unknown symbols, code-like strings, sizes beyond max_int."""
    if isinstance(value, str):
        return _check_string(value, path)
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in check_value(v, f"{path}[{i}]", max_int)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in check_value(v, join_path(path, str(k)), max_int)]
    if max_int is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > max_int:
        return [Problem(path, f"expected at most {max_int}, found {value}")]
    return []


def _check_string(value: str, path: str) -> list[Problem]:
    if value in SYMBOLS:
        return []
    unquoted = _unquote(value)
    plain = value if unquoted is None else unquoted
    if _DOTTED.match(plain):
        return [Problem(path, f"unknown symbol {value!r}{did_you_mean(plain, SYMBOLS)}; symbols are "
                              "Image.*, ImageFilter.*, InterpolationMode.*, AutoAugmentPolicy.* and torch dtypes")]
    if not _PLAIN.match(plain) or "__" in plain:
        return [Problem(path, f"expected a number, true/false, a list, a plain word (such as 'RGB' or 'reflect') or "
                              f"a symbol such as 'Image.ANTIALIAS'; found {value!r}"[:300])]
    return []


def call_params(raw: Any) -> dict[str, Any]:
    """`true` means "no parameters", as in the seed commands."""
    if raw is True or raw is None:
        return {}
    if isinstance(raw, Mapping):
        return {k: resolve_value(v) for k, v in raw.items()}
    raise TypeError(f"expected an object of parameters or true, found {raw!r}")


@dataclass(frozen=True)
class BoundOp:
    entry: Entry
    kwargs: dict[str, Any]

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.entry.target(image, **self.kwargs)


def _as_tuple_size(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Pillow wants tuples for sizes and boxes; JSON only has lists.
    return {k: tuple(v) if isinstance(v, list) and k in ("size", "box") else v for k, v in kwargs.items()}


def build_image_op(name: str, raw_params: Any) -> BoundOp:
    entry = IMAGE_OPS.get(name)
    kwargs = _as_tuple_size(call_params(raw_params))
    entry.bind(kwargs)
    return BoundOp(entry, kwargs)


def build_image_ops(specs: Sequence[Mapping[str, Any]]) -> list[BoundOp]:
    ops = []
    for spec in specs:
        if len(spec) != 1:
            raise ValueError(f"each image op is one {{name: params}} pair; found keys {sorted(spec)}")
        ((name, params),) = spec.items()
        ops.append(build_image_op(name, params))
    return ops


def build_transform(name: str, raw_params: Any) -> tuple[Entry, Callable[[Any], Any]]:
    entry = TRANSFORMS.get(name)
    kwargs = call_params(raw_params)
    entry.bind(kwargs)
    return entry, entry.target(**kwargs)


@dataclass
class Preprocess:
    """image ops → deterministic transforms (cacheable) → random transforms (per epoch)."""

    image_ops: list[BoundOp]
    fixed: list[Callable[[Any], Any]]
    augment: list[Callable[[Any], Any]]
    # Which augment steps are random; the others (a ToTensor after a flip) still run without augmentation.
    augment_random: list[bool] = field(default_factory=list)

    def deterministic(self, image: Image.Image) -> Any:
        for op in self.image_ops:
            image = op(image)
        out: Any = image
        for step in self.fixed:
            out = step(out)
        return out

    def augmentation(self, value: Any) -> Any:
        for step in self.augment:
            value = step(value)
        return value

    def __call__(self, image: Image.Image) -> torch.Tensor:
        out = self.augmentation(self.deterministic(image))
        if not isinstance(out, torch.Tensor):
            raise TypeError("the transforms must end in a tensor (add ToTensor)")
        return out

    def without_augmentation(self) -> Preprocess:
        flags = self.augment_random or [True] * len(self.augment)
        kept = [step for step, random in zip(self.augment, flags, strict=True) if not random]
        return Preprocess(self.image_ops, self.fixed + kept, [])


def build_preprocess(image_ops: Sequence[Mapping[str, Any]], transform: Mapping[str, Any]) -> Preprocess:
    fixed: list[Callable[[Any], Any]] = []
    augment: list[Callable[[Any], Any]] = []
    random: list[bool] = []
    for name, params in transform.items():
        entry, step = build_transform(name, params)
        # Once a random step appears, everything after it must run per sample too.
        if entry.random or augment:
            augment.append(step)
            random.append(entry.random)
        else:
            fixed.append(step)
    return Preprocess(build_image_ops(image_ops), fixed, augment, random)
