"""Image facts from bytes: content key, format, size, perceptual hash. Full decode, no trust in headers."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MAX_PIXELS = 64_000_000  # decompression-bomb guard: refuse before allocating


class ImageRejected(ValueError):
    """Bytes that are not an image we keep; .reason is a short stable word for reports."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class ImageInfo:
    key: str  # sha256 hex of the bytes
    format: str
    width: int
    height: int
    nbytes: int
    phash: str  # 64-bit difference hash, hex


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def difference_hash(image: Image.Image) -> str:
    """dHash: robust to rescaling and re-encoding, cheap, no extra dependency."""
    small = image.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = list(small.getdata())
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (pixels[row * 9 + col] > pixels[row * 9 + col + 1])
    return f"{bits:016x}"



def inspect_image(data: bytes, min_side: int = 1) -> tuple[ImageInfo, Image.Image]:
    """Decode fully; raise ImageRejected with a reason for anything we would not train on."""
    if not data:
        raise ImageRejected("empty")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        raise ImageRejected("html")
    if head.startswith(b"<?xml") or b"<svg" in head:
        raise ImageRejected("svg")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or ""
            width, height = probe.size
    except Exception as exc:
        raise ImageRejected("not_an_image", str(exc)[:120]) from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected("unsupported_format", fmt)
    if width * height > MAX_PIXELS:
        raise ImageRejected("too_many_pixels", f"{width}x{height}")
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} < {min_side}")
    try:
        image = Image.open(io.BytesIO(data))
        image.seek(0)  # GIF: the first frame
        image.load()
        image = image.convert("RGB")
    except Exception as exc:
        raise ImageRejected("truncated", str(exc)[:120]) from None
    info = ImageInfo(content_key(data), fmt, width, height, len(data), difference_hash(image))
    return info, image
