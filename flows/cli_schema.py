"""serptrain sub-commands of this area (see flows/cli.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Sub-commands of this area are added here."""
