"""Process defaults set before Prefect is imported: no telemetry, Prefect's home inside the project."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_prefect_environment() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
        data_dir = Path(os.environ.get("SERPTRAIN_DATA_DIR", ".serptrain"))
        home = (data_dir / "prefect").resolve()
        home.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level itself
        os.environ["PREFECT_HOME"] = str(home)
