"""The training command: what a user asks for. Strict (extra="forbid") pydantic models.

Names inside (loss, optimizer, transforms, image ops, layers) are checked against the registries by
`models.validation`, which also dry-runs the whole command.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

# Free text (label names, queries) is never evaluated; code in it is still refused, because no label or
# query needs a dunder or a call and such a string is a mistake or an attack the user should hear about.
_CODE_LIKE = re.compile(r"__|[A-Za-z_][\w.]*\(|`|\$\(|\bimport\s")


def _plain_text(value: str) -> str:
    if _CODE_LIKE.search(value):
        raise ValueError(f"looks like code (dunder, call or import), which is never run; found {value!r}"[:300])
    return value


SafeText = Annotated[str, AfterValidator(_plain_text)]


def _op_params(value: Any) -> Any:
    if value is True or isinstance(value, dict):
        return value
    raise ValueError(f"expected an object of parameters or true, found {value!r}"[:300])


# A call's parameters: {param: JSON value}, or true for "no parameters" (as in the seed commands).
OpParams = Annotated[Any, BeforeValidator(_op_params), WithJsonSchema(
    {"anyOf": [{"type": "object"}, {"const": True}], "description": "parameters, or true for none"})]


def _catalog() -> Any:
    # The registries import torch, torchvision and PIL: only the JSON Schema needs their names, so they are
    # read when a schema is generated, and importing the command (store and acquire CLIs) stays light.
    from models import catalog

    return catalog


def _presets() -> list[str]:
    from models.network import PRESETS
    from models.zoo import ZOO_NAMES

    return sorted(PRESETS) + sorted(ZOO_NAMES)


def _patch(path: str, make_extra: Callable[[], dict[str, Any]]) -> Any:
    """A json_schema_extra hook merging `make_extra()` into the sub-schema at `path` ("items", "string"), so
    an enum lands on the string branch of an optional field rather than beside its null branch."""

    def hook(schema: dict[str, Any]) -> None:
        extra = make_extra()
        targets = [schema]
        for part in path.split(".") if path else []:
            if part in ("string", "array"):
                targets = [s for t in targets for s in t.get("anyOf", [t]) if s.get("type") == part]
            else:
                targets = [t.setdefault(part, {}) for t in targets]
        for target in targets:
            target.update(extra)

    return hook


def _names(names: Callable[[], list[str]], what: str) -> Any:
    # Enums in the JSON Schema make the Prefect UI offer a choice; validation itself uses the registries,
    # which also name the closest valid names.
    return _patch("", lambda: {"enum": names(), "description": f"One of the registered {what} "
                                                               "(see docs/command-reference.md)."})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NamedCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(description="A registered name; the other keys are its parameters.")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LossCall(NamedCall):
    """A loss from torch.nn: {"name": "CrossEntropyLoss", ...parameters}."""

    name: str = Field(json_schema_extra=_names(lambda: _catalog().LOSSES.names(), "losses"))


class OptimizerCall(NamedCall):
    """An optimizer from torch.optim: {"name": "SGD", "lr": 0.01, ...parameters}."""

    name: str = Field(json_schema_extra=_names(lambda: _catalog().OPTIMIZERS.names(), "optimizers"))


class SchedulerCall(NamedCall):
    """An lr scheduler from torch.optim.lr_scheduler: {"name": "StepLR", "step_size": 5}."""

    name: str = Field(json_schema_extra=_names(lambda: _catalog().SCHEDULERS.names(), "lr schedulers"))


def _label_item(value: Any) -> Any:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict):
        return value
    raise ValueError(f"expected a label name or {{name, queries}}, found {value!r}"[:300])


class LabelSpec(Strict):
    """One class: its name and the search queries that feed it."""

    name: SafeText = Field(min_length=1, max_length=200, description="Label name (the class).")
    queries: list[SafeText] = Field(
        default_factory=list, description="Search queries feeding this label; empty means the name itself."
    )
    limit: int | None = Field(default=None, gt=0, description="Target number of images for this label.")
    pages: int = Field(default=2, gt=0, le=20, description="Budget of SerpApi result pages per query.")

    def search_queries(self) -> list[str]:
        return self.queries or [self.name]


LabelItem = Annotated[LabelSpec, BeforeValidator(_label_item, json_schema_input_type=str | LabelSpec)]


def _layer_item() -> dict[str, Any]:
    return {"required": ["name"],
            "properties": {"name": {"enum": _catalog().LAYERS.names(), "description": "A torch.nn layer."}}}


class ModelSpec(Strict):
    """The network: a preset or torchvision model name, or a list of torch.nn layers."""

    preset: str | None = Field(
        default=None, description="A network preset or torchvision model name; give either this or layers.",
        json_schema_extra=_patch("string", lambda: {"enum": _presets()}),
    )
    layers: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, json_schema_extra=_patch("array.items", _layer_item),
        description='A list of torch.nn layers: {"name": "Conv2d", ...}; sizes may be "auto", '
        'the number of classes is "n_labels".',
    )
    weights: SafeText | None = Field(default=None, description="torchvision weights name or a local file.")

    @model_validator(mode="after")
    def _one_network(self) -> ModelSpec:
        if self.preset is not None and self.layers is not None:
            raise ValueError(f"give either preset or layers, not both; found preset {self.preset!r} and "
                             f"{len(self.layers)} layers")
        return self


class TrainingSpec(Strict):
    amp: Literal["auto", "bf16", "fp16", "off"] = Field(
        default="auto", description="Mixed precision on CUDA: auto picks bf16 where supported, else fp16; CPU is fp32."
    )
    balanced_sampling: bool = Field(default=False, description="Draw each label equally often in training batches.")
    grad_clip: float | None = Field(default=None, gt=0, description="Clip the gradient norm to this value.")
    warmup_steps: int = Field(default=0, ge=0, le=1_000_000, description="Linear learning-rate warmup, in steps.")
    patience: int | None = Field(
        default=None, gt=0, le=10_000,
        description="Early stopping: epochs without a better validation loss; the best weights are kept.",
    )


class AcquireSpec(Strict):
    """Where the training images come from."""

    source: Literal["auto", "store", "synthetic", "serpapi"] = Field(
        default="auto",
        description="Where images come from: auto (store if it holds the labels, else SerpApi), "
        "store, synthetic (offline generated shapes), serpapi.",
    )
    per_label: int = Field(default=150, gt=0, le=100_000, description="Images per label to gather.")
    image_size: int = Field(default=64, ge=16, le=1024, description="Synthetic image side, pixels.")
    seed: int = Field(default=0, description="Synthetic generator seed.")
    no_cache: bool = Field(default=False, description="Bypass cached SerpApi result pages.")


class Command(Strict):
    """A training command: labels in, a trained and evaluated classifier out. See docs/command-reference.md."""

    model_name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Name of the model; bundles go under it."
    )
    labels: list[LabelItem] = Field(
        min_length=2, max_length=10_000,
        description="The classes: names, or {name, queries, limit, pages} objects. At least two, unique.")
    criterion: LossCall = Field(
        default_factory=lambda: LossCall(name="CrossEntropyLoss"),
        description='Loss from torch.nn: {"name": LossName, ...parameters}.',
    )
    optimizer: OptimizerCall = Field(
        default_factory=lambda: OptimizerCall(name="Adam", lr=0.003),
        description='Optimizer from torch.optim: {"name": OptimizerName, "lr": ..., ...parameters}.',
    )
    scheduler: SchedulerCall | None = Field(
        default=None, description='lr scheduler from torch.optim.lr_scheduler: {"name": ..., ...parameters}; '
        "stepped once per epoch (per step in seed mode).")
    batch_size: int = Field(default=32, gt=0, le=4096, description="Images per training step.")
    epochs: int = Field(default=8, gt=0, le=10_000, description="Passes over the training split.")
    steps: int | None = Field(
        default=None, gt=0, le=10_000_000,
        description="Seed mode: train this many steps, each on a random batch (the older project's n_epoch); "
        "when set, epochs is ignored.",
    )
    image_ops: list[dict[str, OpParams]] = Field(
        default_factory=lambda: [{"resize": {"size": [32, 32]}}, {"convert": {"mode": "RGB"}}],
        description="PIL image operations applied in order: [{op_name: {param: value} or true}], one op per item.",
        json_schema_extra=_patch("items", lambda: {"propertyNames": {"enum": _catalog().IMAGE_OPS.names()},
                                                   "minProperties": 1, "maxProperties": 1}),
    )
    transform: dict[str, OpParams] = Field(
        default_factory=lambda: {"ToTensor": True, "Normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}},
        description="torchvision transforms applied in order after the image ops: "
        "{TransformName: {param: value} or true}.",
        json_schema_extra=_patch("", lambda: {"propertyNames": {"enum": _catalog().TRANSFORMS.names()}}),
    )
    model: ModelSpec = Field(default_factory=lambda: ModelSpec(preset="tiny_cnn"), description="The network.")
    seed: int = Field(default=0, description="Seed for weights, shuffling and augmentation.")
    acquire: AcquireSpec = Field(default_factory=AcquireSpec, description="Where the images come from.")
    training: TrainingSpec = Field(
        default_factory=TrainingSpec, description="How to train: precision, sampling, clipping, warmup, early stopping."
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_spelling(cls, raw: Any) -> Any:
        # A command posted to the train-classifier deployment (which leaves checking to the flow) or passed
        # to the flow from Python may use the older spelling; the CLI normalizes first, so it sees ours.
        from models.seed import accept_seed_spelling

        return accept_seed_spelling(raw)

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, value: list[LabelSpec]) -> list[LabelSpec]:
        names = [label.name for label in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"label names must be unique; repeated: {duplicates}")
        return value

    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]
