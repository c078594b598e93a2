"""Process defaults set before Prefect is imported: no telemetry, Prefect's home inside the project."""

from __future__ import annotations

import logging
import os
from pathlib import Path

# Sub-commands that never start Prefect: they must write nothing, not even Prefect's home.
PREFECT_FREE_COMMANDS = {"validate", "schema"}
# Sub-commands that run flows, on Prefect's ephemeral API unless PREFECT_API_URL names a server.
FLOW_COMMANDS = {"run", "resume", "demo", "acquire"}
DATABASE_READY = ".serptrain-database-ready"


def prepare_prefect_environment() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
        data_dir = Path(os.environ.get("SERPTRAIN_DATA_DIR", ".serptrain"))
        os.environ["PREFECT_HOME"] = str((data_dir / "prefect").resolve())
        # Persisted task results (caching, retries) live beside the rest of the working data.
        os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str((data_dir / "results").resolve()))


def ensure_prefect_home() -> None:
    """Prefect creates only the last level of its home itself."""
    home = os.environ.get("PREFECT_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)


def ensure_prefect_database() -> None:
    """Build the ephemeral API's database once, under a file lock.

    Two first runs at once in a fresh home would each migrate the same new SQLite file and register the same
    block types from their temporary servers, and one would print tracebacks ("index ... already exists",
    "Failed to register block schema"). The first run here builds it while the others wait; later runs only
    take and drop the lock.
    """
    home = os.environ.get("PREFECT_HOME")
    if not home or os.environ.get("PREFECT_API_URL") or os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"):
        return  # a real server, or a database someone else looks after
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the race stays possible there
        return
    ready = Path(home) / DATABASE_READY
    with open(Path(home) / ".serptrain-database.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and (Path(home) / "prefect.db").exists():  # the default database file of that home
            return
        import asyncio

        asyncio.run(_build_prefect_database())
        ready.touch()


async def _build_prefect_database() -> None:
    """What a temporary server does on its first start: migrations, then the block types."""
    from prefect.server.database import provide_database_interface
    from prefect.server.models.block_registration import run_block_auto_registration

    db = provide_database_interface()
    await db.create_db()
    async with await db.session() as session:
        await run_block_auto_registration(session=session)


class HideUserErrorTracebacks(logging.Filter):
    """A user's mistake (bad key, missing images) is one line in the terminal, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from models.errors import UserError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, UserError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    import prefect.main  # noqa: F401  (sets up Prefect's console handlers, which we then filter)

    for name in ("", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, HideUserErrorTracebacks) for f in handler.filters):
                handler.addFilter(HideUserErrorTracebacks())
