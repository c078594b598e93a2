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
