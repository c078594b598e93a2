"""Moving a dataset between stores (SQLite ↔ Couchbase, machine ↔ machine) through a plain folder.

`export_store` writes DIR/<label>/<key>.<ext> for every image of every label (excluded and ambiguous ones
too: the flags travel in the manifest) and DIR/manifest.json with each image's labels, split, flags and
provenance. `import_export` reads that back into any store: it checks every file against its key (the
SHA-256 of its bytes) and decodes it, keeps the recorded split, and is idempotent, so an interrupted
import is finished by running it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.errors import UserError
from models.images import ImageInfo, ImageRejected, content_key, inspect_image
from store.base import SPLITS, ImagePut, ImageStore, now_iso, split_of

MANIFEST = "manifest.json"
FORMAT = "serptrain-export/1"
BATCH = 256
SUFFIX = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
# split_of(group) for these groups is the named split: passing one as split_group keeps a recorded split
SPLIT_GROUP = {s: next(f"{i:08x}" for i in range(100) if split_of(f"{i:08x}") == s) for s in SPLITS}
Progress = Callable[[int, int], None]


def _folder(label: str) -> str:
    if not label or label in (".", "..") or "/" in label or (os.sep in label) or "\0" in label:
        raise UserError(f"label {label!r} cannot be a folder name; export the other labels with --label")
    return label


def export_store(store: ImageStore, dest: Path, labels: list[str] | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Write the images and manifest; returns the manifest (without the per-image list) as a summary."""
    known = store.labels()
    chosen = labels or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise UserError(f"no label {', '.join(map(repr, unknown))} in {store.url} "
                        f"(it has: {', '.join(known)})")
    folders = {label: _folder(label) for label in chosen}
    dest.mkdir(parents=True, exist_ok=True)
    images: dict[str, dict[str, Any]] = {}
    total = sum(store.count(label, include_excluded=True) for label in chosen)
    done = 0
    for label in chosen:
        (dest / folders[label]).mkdir(exist_ok=True)
        keys = store.keys(label, include_excluded=True)
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            blobs = store.get_many(chunk)
            for key in chunk:
                entry = images.get(key)
                if key not in blobs:
                    continue  # deleted while exporting
                if entry is None:
                    meta = store.get_meta(key)
                    if meta is None:
                        continue
                    entry = images[key] = asdict(meta) | {"files": []}
                name = f"{folders[label]}/{key}.{SUFFIX.get(entry['format'], 'img')}"
                (dest / name).write_bytes(blobs[key])
                entry["files"].append(name)
            done += len(chunk)
            if progress:
                progress(done, total)
    manifest = {"format": FORMAT, "store": store.url, "exported_at": now_iso(),
                "labels": {label: store.count(label, include_excluded=True) for label in chosen},
                "folders": folders, "images": list(images.values())}
    tmp = dest / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(dest / MANIFEST)  # last and atomic: a manifest is only there when every file is
    return {k: v for k, v in manifest.items() if k != "images"} | {"images": len(images)}


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{src / MANIFEST}: cannot read it ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{src / MANIFEST}: not a serptrain export (expected format {FORMAT!r})")
    return manifest


def import_export(store: ImageStore, src: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Read what export_store wrote. Returns counts: images, created, flags_set, rejected (by reason)."""
    manifest = read_manifest(src)
    report: dict[str, Any] = {"images": 0, "created": 0, "flags_set": 0, "rejected": {}}
    entries = manifest["images"]
    for start in range(0, len(entries), BATCH):
        puts, later = [], []
        for entry in entries[start:start + BATCH]:
            checked = _verified(src, entry, report["rejected"])
            if checked is None:
                continue
            labels = sorted(entry["labels"])
            sources = {label: [s for s in entry.get("sources", []) if s.get("label") == label] or [None]
                       for label in labels}
            group = SPLIT_GROUP.get(entry.get("split"))
            puts.append(ImagePut(*checked, labels[0], _strip(sources[labels[0]][0]), group))
            later.append((entry, labels, sources))
        for result, (entry, labels, sources) in zip(store.put_images(puts), later, strict=True):
            report["images"] += 1
            report["created"] += result.created
            for label in labels:  # the first source of the first label came with the put
                for source in sources[label][1:] if label == labels[0] else sources[label]:
                    store.add_label(result.key, label, _strip(source))
            meta = store.get_meta(result.key)
            wanted = (bool(entry.get("excluded")), bool(entry.get("ambiguous")))
            if meta is not None and (meta.excluded, meta.ambiguous) != wanted:
                store.mark(result.key, excluded=wanted[0], ambiguous=wanted[1])
                report["flags_set"] += 1
        if progress:
            progress(min(start + BATCH, len(entries)), len(entries))
    return report


def _strip(source: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recorded source without its label field (the store adds the label it is filed under)."""
    if not source:
        return None
    return {k: v for k, v in source.items() if k != "label"} or None


def _verified(src: Path, entry: dict[str, Any], rejected: dict[str, int]) -> tuple[bytes, ImageInfo] | None:
    for name in entry.get("files", []):
        path = (src / name).resolve()
        if src.resolve() not in path.parents or not path.is_file():
            continue  # a manifest may not point outside its folder
        data = path.read_bytes()
        if content_key(data) != entry.get("key"):
            rejected["bytes_do_not_match_key"] = rejected.get("bytes_do_not_match_key", 0) + 1
            return None
        try:
            info, _ = inspect_image(data)
        except ImageRejected as exc:
            rejected[exc.reason] = rejected.get(exc.reason, 0) + 1
            return None
        return data, info
    rejected["missing_file"] = rejected.get("missing_file", 0) + 1
    return None
