"""The training command: what a user asks for. Strict (extra="forbid") pydantic models.

Names inside (loss, optimizer, transforms, image ops, layers) are checked against the registries by
`models.validation`, which also dry-runs the whole command.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A call spec: {"name": "SGD", "lr": 0.01}. Parameters are JSON values checked against the target's
# signature later; the schema only fixes the name.
OpParams = dict[str, Any] | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NamedCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(description="A registered name; the other keys are its parameters.")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LabelSpec(Strict):
    name: str = Field(min_length=1, max_length=200, description="Label name (the class).")
    queries: list[str] = Field(
        default_factory=list, description="Search queries feeding this label; empty means the name itself."
    )
    limit: int | None = Field(default=None, gt=0, description="Target number of images for this label.")
    pages: int = Field(default=2, gt=0, le=20, description="Budget of SerpApi result pages per query.")

    def search_queries(self) -> list[str]:
        return self.queries or [self.name]


class ModelSpec(Strict):
    preset: str | None = Field(default=None, description="A network preset or torchvision model name.")
    layers: list[dict[str, Any]] | None = Field(
        default=None, description='A list of torch.nn layers: {"name": "Conv2d", ...}; sizes may be "auto".'
    )
    weights: str | None = Field(default=None, description="torchvision weights name or a local file.")


class AcquireSpec(Strict):
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
    model_name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="Name of the model; bundles go under it."
    )
    labels: list[LabelSpec] = Field(min_length=2, description="The classes, with their search queries.")
    criterion: NamedCall = Field(
        default_factory=lambda: NamedCall(name="CrossEntropyLoss"), description="Loss from torch.nn."
    )
    optimizer: NamedCall = Field(
        default_factory=lambda: NamedCall(name="Adam", lr=0.003), description="Optimizer from torch.optim."
    )
    scheduler: NamedCall | None = Field(default=None, description="lr scheduler from torch.optim.lr_scheduler.")
    batch_size: int = Field(default=32, gt=0, le=4096, description="Images per training step.")
    epochs: int = Field(default=8, gt=0, le=10_000, description="Passes over the training split.")
    steps: int | None = Field(
        default=None, gt=0, le=10_000_000,
        description="Seed mode: train this many steps, each on a random batch (the older project's n_epoch); "
        "when set, epochs is ignored.",
    )
    image_ops: list[dict[str, OpParams]] = Field(
        default_factory=lambda: [{"resize": {"size": [32, 32]}}, {"convert": {"mode": "RGB"}}],
        description="PIL image operations applied in order: [{op_name: {param: value}}].",
    )
    transform: dict[str, OpParams] = Field(
        default_factory=lambda: {"ToTensor": True, "Normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}},
        description="torchvision transforms applied in order: {TransformName: {param: value} or true}.",
    )
    model: ModelSpec = Field(default_factory=lambda: ModelSpec(preset="tiny_cnn"), description="The network.")
    seed: int = Field(default=0, description="Seed for weights, shuffling and augmentation.")
    acquire: AcquireSpec = Field(default_factory=AcquireSpec, description="Where the images come from.")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

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
