"""`serptrain acquire FILE [--json]`: the older add_to_db / multiple_query requests or a training command."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flows.tables import text_table

COLUMNS = ("label", "target", "usable", "pages", "seen", "downloaded", "stored", "dups", "near", "ambiguous")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "acquire", help="Scrape, verify and store images for labels (SerpApi google_images).",
        description="FILE is an add_to_db or multiple_query request (the older project's dictionaries) or a "
        "training command (its labels and queries), JSON or YAML. The SerpApi key comes from the request's "
        "api_key, else SERPAPI_API_KEY, else the Prefect Secret block 'serpapi-api-key'.",
    )
    parser.add_argument("file", metavar="FILE", help="request or command file (.json, .yaml)")
    parser.add_argument("--json", action="store_true", help="print the ingest report as JSON")
    parser.add_argument("--store", default=None, help="store URL (default: SERPTRAIN_STORE)")
    parser.set_defaults(func=run_acquire)


def format_report(report: dict[str, Any]) -> str:
    """A plain table per label, then rejections by reason and where the contact sheets are."""
    rows: list[tuple[Any, ...]] = []
    notes: list[str] = []
    for label, entry in report["labels"].items():
        rows.append((label, entry["target"], entry["usable_in_store"], entry["pages"], entry["seen"],
                     entry["downloaded"], entry["stored"], entry["duplicates"], entry["near_duplicates"],
                     entry["ambiguous"]))
        if entry["rejected"]:
            reasons = ", ".join(f"{reason} {n}" for reason, n in entry["rejected"].items())
            notes.append(f"{label}: rejected {reasons}")
        notes += [f"{label}: {warning}" for warning in entry.get("warnings", [])]
    lines = text_table(COLUMNS, rows)
    lines += notes
    lines += [f"contact sheet {label}: {path}" for label, path in report.get("contact_sheets", {}).items()]
    return "\n".join(lines)


def run_acquire(args: argparse.Namespace) -> int:
    from flows.acquire import acquire_labels
    from flows.commandfile import read_command_file
    from models.acquire_request import parse_acquire_request

    plans, api_key = parse_acquire_request(read_command_file(args.file))
    report = acquire_labels(plans, args.store, api_key)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_report(report))
    return 0
