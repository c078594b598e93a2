"""The pictures a person looks at instead of reading numbers: confusion matrix, curves, top losses.

matplotlib's object API with the Agg canvas (no pyplot, no global figure state, no display needed), each
PNG written then renamed so a reader never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything can pick an interactive backend

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def _short(label: str, width: int = 18) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def confusion_matrix_png(path: Path, confusion: Sequence[Sequence[int]], labels: list[str]) -> Path:
    """Counts in the cells; colour is the share of each true label's images (rows sum to 1)."""
    n = len(labels)
    side = max(4.0, 0.6 * n + 2)
    figure = Figure(figsize=(side + 1, side))
    ax = figure.subplots()
    shares = [[c / max(sum(row), 1) for c in row] for row in confusion]
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [_short(x) for x in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), [_short(x) for x in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center",
                        color="white" if shares[i][j] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=ax, fraction=0.046, label="share of the true label")
    ax.set_title("confusion matrix (test split)")
    return _save(figure, path)


def curves_png(path: Path, history: list[dict[str, Any]]) -> Path:
    """Loss and accuracy per epoch, train and validation."""
    figure = Figure(figsize=(10, 4))
    loss_ax, acc_ax = figure.subplots(1, 2)
    epochs = [entry["epoch"] for entry in history]
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        for split, style in (("train", "-o"), ("val", "--s")):
            values = [entry.get(f"{split}_{metric}") for entry in history]
            points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.set_ylim(0, 1.02)
    return _save(figure, path)


def top_losses_png(path: Path, entries: list[dict[str, Any]], images: list[Image.Image], columns: int = 4) -> Path:
    """A gallery of the most confidently wrong images: true label, prediction and its probability."""
    count = max(1, len(entries))
    rows = (count + columns - 1) // columns
    figure = Figure(figsize=(3 * columns, 3.3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= len(entries):
            continue
        entry = entries[index]
        ax.imshow(images[index])
        ax.set_title(f"true: {_short(entry['label'])}\npred: {_short(entry['predicted'])} "
                     f"({entry['confidence']:.2f})\n{entry['key'][:12]}", fontsize=8)
    if not entries:
        axes.flat[0].text(0.5, 0.5, "no wrong predictions on the test split", ha="center", va="center")
    figure.suptitle("most confidently wrong test images")
    return _save(figure, path)
