"""Progress of long CLI work on stderr: one rewritten line on a terminal, a line per step of 10% in a log."""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_printer(verb: str) -> Callable[[int, int], None]:
    """A `(done, total)` callback; call `finish_progress()` after the last call."""
    on_terminal = sys.stderr.isatty()
    last_tenth = -1

    def show(done: int, total: int) -> None:
        nonlocal last_tenth
        if on_terminal:
            if done % max(1, total // 100) == 0 or done == total:
                print(f"\r{verb} {done}/{total}", end="", file=sys.stderr, flush=True)
            return
        tenth = done * 10 // max(1, total)
        if tenth > last_tenth:  # logs and pipes get whole lines, not a carriage-return stream
            last_tenth = tenth
            print(f"{verb} {done}/{total}", file=sys.stderr, flush=True)

    return show


def finish_progress() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)
