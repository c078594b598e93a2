"""Reading command files (JSON or YAML) with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from models.errors import UserError


def read_command_file(path: str | Path) -> Any:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: no such file")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{file}: not valid {'JSON' if file.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
