"""Plain-text tables for the CLI: columns as wide as their widest cell, so long label names are never cut."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> list[str]:
    """Lines of a table; the first column is left-aligned, numbers right-aligned, floats with 3 decimals,
    None as "-"."""
    cells = [[_cell(value) for value in row] for row in [list(header), *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [any(isinstance(row[i], int | float) for row in rows)
               and all(row[i] is None or isinstance(row[i], int | float) for row in rows) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [cell.rjust(width) if numeric[i] and i else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)
