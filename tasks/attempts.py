"""Attempt records: one per training run, its status walked through the pipeline."""

from __future__ import annotations

from typing import Any

from prefect import task

from models.command import Command
from models.errors import UserError
from store import open_store

CODE_VERSION = "0.1.0"


def public_command(command: Command) -> dict[str, Any]:
    """The normalized command as stored in attempts and artifacts: no secrets in it."""
    return command.model_dump(mode="json")


@task(name="start-attempt")
def start_attempt(command: Command, store_url: str | None = None, attempt_id: str | None = None) -> str:
    """A new attempt, or the named one taken up again (training resumes from its last checkpoint)."""
    store = open_store(store_url)
    existing = store.get_attempt(attempt_id) if attempt_id else None
    if existing is not None:
        if existing["model_name"] != command.model_name:
            raise UserError(f"attempt {attempt_id!r} trains {existing['model_name']!r}, not {command.model_name!r}")
        store.update_attempt(attempt_id, status="validating", reason=None, command=public_command(command))
        return attempt_id
    doc = {"model_name": command.model_name, "status": "validating", "command": public_command(command),
           "code_version": CODE_VERSION}
    return store.create_attempt(doc | ({"id": attempt_id} if attempt_id else {}))


@task(name="set-attempt-status")
def set_attempt_status(attempt_id: str, status: str, store_url: str | None = None, **fields: Any) -> None:
    open_store(store_url).update_attempt(attempt_id, status=status, **fields)
