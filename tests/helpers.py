"""Small builders shared by tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from store import open_store
from tasks.ingest import Ingestor, folder_images, ingest_paths
from tasks.synthetic import generate


def png_bytes(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def fill_synthetic(store_url: str, root: Path, labels: list[str], per_label: int, size: int = 32) -> dict[str, Any]:
    generate(root, labels, per_label, size, seed=0)
    return ingest_paths(Ingestor(open_store(store_url)), list(folder_images(root))).as_dict()


def small_command(labels: list[str], **overrides: Any) -> dict[str, Any]:
    command = {
        "model_name": "tiny",
        "labels": labels,
        "epochs": 2,
        "batch_size": 16,
        "image_ops": [{"resize": {"size": [16, 16]}}, {"convert": {"mode": "RGB"}}],
        "acquire": {"source": "store"},
    }
    command.update(overrides)
    return command


def seed_commands_dir() -> Path:
    """The older project's command dictionaries: ../shared/seed-commands when present, else the copy kept here."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "seed-commands"
    return shared if shared.is_dir() else Path(__file__).resolve().parent / "fixtures" / "seed-commands"


def train_small_bundle(store_url: str, workdir: Path, labels: list[str], per_label: int, epochs: int,
                       attempt_id: str) -> Path:
    """Synthetic 16 px images of `labels` in the store, a small model trained on them; its bundle directory."""
    from models.validation import validate_command
    from tasks.training.loop import TrainOptions, train

    fill_synthetic(store_url, workdir / "images", labels, per_label=per_label, size=16)
    command, _ = validate_command(small_command(labels, epochs=epochs))
    return train(command, open_store(store_url), TrainOptions(workdir / "runs", attempt_id, workers=0)).bundle_dir
