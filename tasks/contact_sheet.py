"""Contact sheets: one PNG grid of thumbnails per label, so a person sees at a glance what was scraped."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from PIL import Image, ImageDraw
from prefect import task
from prefect.cache_policies import NO_CACHE

from store import open_store

THUMB = 96
PAD = 4
HEADER = 22


def slug(label: str) -> str:
    """A file-name-safe, artifact-key-safe form of a label name."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:80] or "label"


def thumbnail(data: bytes) -> Image.Image | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            thumb = image.convert("RGB")
            thumb.thumbnail((THUMB, THUMB))
            return thumb
    except Exception:
        return None  # a sheet never fails on one image; stored images were verified anyway


def render_sheet(title: str, images: list[bytes], columns: int = 8) -> Image.Image:
    """A grid of thumbnails under a title line; an empty grid says so."""
    thumbs = [t for t in (thumbnail(d) for d in images) if t is not None]
    columns = max(1, min(columns, len(thumbs) or 1))
    rows = max(1, math.ceil(len(thumbs) / columns))
    sheet = Image.new("RGB", (columns * (THUMB + PAD) + PAD, HEADER + rows * (THUMB + PAD) + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    caption = f"{title}  ({len(thumbs)} shown)" if thumbs else f"{title}  (no images)"
    draw.text((PAD, 5), caption, fill="black")
    for index, thumb in enumerate(thumbs):
        row, col = divmod(index, columns)
        x = PAD + col * (THUMB + PAD) + (THUMB - thumb.width) // 2
        y = HEADER + row * (THUMB + PAD) + (THUMB - thumb.height) // 2
        sheet.paste(thumb, (x, y))
    return sheet


@task(name="contact-sheet", task_run_name="contact-sheet {label}", cache_policy=NO_CACHE,
      persist_result=False)
def make_contact_sheet(label: str, keys: list[str], out_dir: str, store_url: str | None = None,
                       max_images: int = 64) -> str:
    """Write <out_dir>/<label-slug>.png from keys (else the label's stored ones); returns its path."""
    store = open_store(store_url)
    chosen = list(dict.fromkeys(keys))[:max_images] or store.keys(label)[:max_images]
    blobs = store.get_many(chosen)
    sheet = render_sheet(label, [blobs[k] for k in chosen if k in blobs])
    path = Path(out_dir) / f"{slug(label)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return str(path.resolve())
