"""Validation step: the command is checked and dry-run before anything is spent."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from models.command import Command
from models.validation import validate_command


@task(name="validate-command")
def validate(command: Command | dict[str, Any]) -> dict[str, Any]:
    """Raises CommandError (all problems, with field paths); returns the dry-run report."""
    raw = command.model_dump(mode="json", exclude_unset=False) if isinstance(command, Command) else command
    _, report = validate_command(raw)
    get_run_logger().info(
        "command valid: input %s → output %s, %d parameters, ~%.1f MB per training step",
        report.input_shape, report.output_shape, report.parameters, report.step_memory_bytes / 2**20,
    )
    return report.as_dict()
