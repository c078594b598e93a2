"""Errors a user can fix: each names the field path, what was expected and what was found."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UserError(Exception):
    """A mistake in user input: printed without a traceback, exit code 2."""

    exit_code = 2


class CommandError(UserError):
    """Every problem found in a command, gathered in one pass."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    hits = closest(name, choices)
    return f" (did you mean {', '.join(repr(h) for h in hits)}?)" if hits else ""


def join_path(*parts: object) -> str:
    """Join path parts: ints become [i], strings become .name."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "":
            out += f".{part}" if out else str(part)
    return out
