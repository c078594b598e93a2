"""serptrain store {stats,export,import,setup} and attempts {list,show,delete} (see flows/cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flows.progress import finish_progress, progress_printer
from flows.tables import text_table
from models.errors import UserError

STORE_HELP = "store URL (default: $SERPTRAIN_STORE or sqlite:///./.serptrain/serptrain.db)"


def _open(args: argparse.Namespace) -> Any:
    from store import open_store

    return open_store(args.store)


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def format_stats(stats: dict[str, Any]) -> str:
    rows = [f"store: {stats['store']}",
            f"images: {stats['images']}  bytes: {human_bytes(stats['bytes'])}  "
            f"excluded: {stats['excluded']}  ambiguous: {stats['ambiguous']}",
            ""]
    rows += text_table(["label", "train", "val", "test", "usable"],
                       [(label, splits["train"], splits["val"], splits["test"], sum(splits.values()))
                        for label, splits in sorted(stats["labels"].items())])
    if not stats["labels"]:
        rows.append("(no labels yet: `serptrain import-folder DIR` or `serptrain run command.yaml`)")
    return "\n".join(rows)


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _open(args).stats()
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    for line in _open_for_setup(args.store).setup():
        print(line)
    return 0


def _open_for_setup(url: str | None) -> Any:
    """Like open_store, but a Couchbase bucket that lacks the layout is what setup is for."""
    from models.settings import load_settings
    from store import open_store

    url = url or load_settings().store
    if url.startswith(("couchbase://", "couchbases://")):
        from store.couchbase import CouchbaseStore

        return CouchbaseStore.from_url(url, check_layout=False)
    return open_store(url)


def cmd_export(args: argparse.Namespace) -> int:
    from store.transfer import export_store

    dest = Path(args.dir)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest}: exists and is not a directory")
    summary = export_store(_open(args), dest, args.label or None, progress_printer("exported"))
    finish_progress()
    print(json.dumps(summary, indent=2) if args.json else
          f"exported {summary['images']} images of {len(summary['labels'])} labels to {dest}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from store.transfer import MANIFEST, import_export

    src = Path(args.dir)
    if not src.is_dir():
        raise UserError(f"{src}: not a directory (expected an export, or DIR/<label>/<images>)")
    store = _open(args)
    if (src / MANIFEST).exists():
        report = import_export(store, src, progress_printer("imported"))
    else:
        report = _import_folders(store, src)
    finish_progress()
    print(json.dumps(report, indent=2) if args.json else _format_import(report))
    return 0


def _import_folders(store: Any, src: Path) -> dict[str, Any]:
    """Plain DIR/<label>/ images go through the ingest path: verified, deduplicated, provenance kept."""
    from tasks.ingest import Ingestor, folder_images, ingest_paths

    items = list(folder_images(src))
    if not items:
        raise UserError(f"{src}: no {Path('manifest.json')} and no images in label sub-folders")
    report = ingest_paths(Ingestor(store), items, progress_printer("imported"))
    return {"labels": report.as_dict(), "stored": report.total("stored")}


def _format_import(report: dict[str, Any]) -> str:
    if "labels" in report:
        lines = [f"{label}: {r['stored']} stored, {r['duplicates']} already there, "
                 f"{r['near_duplicates']} near duplicates, rejected {r['rejected'] or 'none'}"
                 for label, r in report["labels"].items()]
        return "\n".join(lines)
    return (f"imported {report['images']} images ({report['created']} new, {report['flags_set']} flags set), "
            f"rejected {report['rejected'] or 'none'}")


def cmd_attempts_list(args: argparse.Namespace) -> int:
    store = _open(args)
    attempts = store.find_attempts(args.model) if args.model else store.list_attempts()
    if args.json:
        print(json.dumps(attempts, indent=2))
        return 0
    rows = [(a["id"], a["model_name"], a["status"], a.get("created_at", "")[:19], len(a.get("epochs") or []),
             ((a.get("metrics") or {}).get("test") or {}).get("accuracy"), "*" if a.get("champion") else "")
            for a in attempts]
    if attempts:
        print("\n".join(text_table(["id", "model", "status", "created", "epochs", "test acc", "champion"], rows)))
    else:
        print("(no attempts)")
    return 0


def _attempt(store: Any, attempt_id: str) -> dict[str, Any]:
    doc = store.get_attempt(attempt_id)
    if doc is None:
        raise UserError(f"no attempt {attempt_id!r} in {store.url}; `serptrain attempts list` shows them")
    return doc


def cmd_attempts_show(args: argparse.Namespace) -> int:
    doc = _attempt(_open(args), args.id)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    fields = ("id", "model_name", "status", "reason", "created_at", "updated_at", "bundle_dir",
              "code_version")
    for field in fields:
        if doc.get(field) is not None:
            print(f"{field:<13} {doc[field]}")
    for entry in doc.get("epochs") or []:
        print(f"  epoch {json.dumps(entry, sort_keys=True)}")
    if doc.get("metrics"):
        print(f"metrics       {json.dumps(doc['metrics'], sort_keys=True)}")
    return 0


def cmd_attempts_delete(args: argparse.Namespace) -> int:
    store = _open(args)
    _attempt(store, args.id)
    store.delete_attempt(args.id)
    print(f"deleted attempt {args.id}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="inspect, set up, export and import the image store")
    store_sub = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    stats = store_sub.add_parser("stats", help="images per label and split, excluded, ambiguous, bytes")
    stats.set_defaults(func=cmd_stats)
    setup = store_sub.add_parser("setup", help="create the SQLite file, or the Couchbase bucket layout "
                                               "(scopes, collections, indexes); safe to run again")
    setup.set_defaults(func=cmd_setup)
    export = store_sub.add_parser("export", help="write DIR/<label>/ images and DIR/manifest.json")
    export.add_argument("dir")
    export.add_argument("--label", action="append", help="only this label (repeatable)")
    export.set_defaults(func=cmd_export)
    imp = store_sub.add_parser("import", help="read an export (or plain DIR/<label>/ images); idempotent")
    imp.add_argument("dir")
    imp.set_defaults(func=cmd_import)
    for parser in (stats, setup, export, imp):
        parser.add_argument("--store", default=None, help=STORE_HELP)
    for parser in (stats, export, imp):
        parser.add_argument("--json", action="store_true", help="print JSON")

    attempts = sub.add_parser("attempts", help="training attempts: list, show, delete")
    att_sub = attempts.add_subparsers(dest="attempts_command", metavar="ACTION", required=True)
    lst = att_sub.add_parser("list", help="every attempt, oldest first")
    lst.add_argument("--model", help="only attempts of this model name")
    lst.set_defaults(func=cmd_attempts_list)
    show = att_sub.add_parser("show", help="one attempt: status, epochs, metrics")
    show.add_argument("id")
    show.set_defaults(func=cmd_attempts_show)
    delete = att_sub.add_parser("delete", help="delete one attempt record (its model bundle stays on disk)")
    delete.add_argument("id")
    delete.set_defaults(func=cmd_attempts_delete)
    for parser in (lst, show, delete):
        parser.add_argument("--store", default=None, help=STORE_HELP)
    for parser in (lst, show):
        parser.add_argument("--json", action="store_true", help="print JSON")
