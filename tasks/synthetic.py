"""An offline image source: a seeded generator of a small real vision task (shapes).

Each label gets one shape; colour, size, position, rotation, background and noise vary per image. The
images are written as PNG/JPEG files and then ingested through the same code path as downloads.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter
from prefect import get_run_logger, task

Painter = Callable[[ImageDraw.ImageDraw, float, float, float, float, tuple[int, int, int]], None]


def _polygon(n: int, star: bool = False) -> Painter:
    def paint(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, colour: tuple) -> None:
        points = []
        steps = n * 2 if star else n
        for i in range(steps):
            radius = r if not star or i % 2 == 0 else r * 0.45
            theta = angle + 2 * math.pi * i / steps
            points.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
        draw.polygon(points, fill=colour)
    return paint


def _circle(draw, cx, cy, r, angle, colour) -> None:  # noqa: ANN001
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)


def _ring(draw, cx, cy, r, angle, colour) -> None:  # noqa: ANN001
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r / 3.5)))


def _bars(count: int) -> Painter:
    def paint(draw, cx, cy, r, angle, colour) -> None:  # noqa: ANN001
        width = max(2, r / (count * 1.6))
        for i in range(count):
            offset = (i - (count - 1) / 2) * r * 1.6 / max(count - 1, 1) if count > 1 else 0
            dx, dy = math.cos(angle), math.sin(angle)
            px, py = -dy * offset, dx * offset
            draw.line([(cx + px - dx * r, cy + py - dy * r), (cx + px + dx * r, cy + py + dy * r)],
                      fill=colour, width=int(width))
    return paint


def _cross(diagonal: bool) -> Painter:
    def paint(draw, cx, cy, r, angle, colour) -> None:  # noqa: ANN001
        base = angle + (math.pi / 4 if diagonal else 0)
        for a in (base, base + math.pi / 2):
            dx, dy = math.cos(a) * r, math.sin(a) * r
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour, width=max(2, int(r / 3)))
    return paint


def _dots(draw, cx, cy, r, angle, colour) -> None:  # noqa: ANN001
    for i in range(3):
        theta = angle + 2 * math.pi * i / 3
        x, y = cx + r * 0.6 * math.cos(theta), cy + r * 0.6 * math.sin(theta)
        draw.ellipse([x - r * 0.3, y - r * 0.3, x + r * 0.3, y + r * 0.3], fill=colour)


def _half_moon(draw, cx, cy, r, angle, colour) -> None:  # noqa: ANN001
    start = math.degrees(angle)
    draw.pieslice([cx - r, cy - r, cx + r, cy + r], start, start + 180, fill=colour)


SHAPES: dict[str, Painter] = {
    "circle": _circle, "square": _polygon(4), "triangle": _polygon(3), "star": _polygon(5, star=True),
    "ring": _ring, "cross": _cross(False), "hexagon": _polygon(6), "stripes": _bars(3),
    "x": _cross(True), "half_moon": _half_moon, "bar": _bars(1), "dots": _dots,
}
DEFAULT_LABELS = ["circle", "square", "triangle", "star"]


def painter_for(label: str, index: int) -> Painter:
    """A label named like a shape draws that shape; any other label takes the index-th shape."""
    return SHAPES.get(label, list(SHAPES.values())[index % len(SHAPES)])


def luminance(rgb: tuple[int, ...]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def contrasting_colour(background: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
    """A random colour a person could tell from the background even in grey."""
    while True:
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if abs(luminance(colour) - luminance(background)) >= 60:
            return colour


def draw_shape(painter: Painter, rng: random.Random, size: int) -> Image.Image:
    background = tuple(rng.randint(0, 255) for _ in range(3))
    colour = contrasting_colour(background, rng)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.38) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    angle = rng.uniform(0, 2 * math.pi)
    painter(draw, cx, cy, radius, angle, colour)
    noise = Image.effect_noise((size, size), rng.uniform(10, 40)).convert("RGB")
    image = Image.blend(image, noise, rng.uniform(0.03, 0.12))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return image


def generate(root: Path, labels: list[str], per_label: int, size: int = 64, seed: int = 0) -> int:
    """Write root/<label>/<n>.png (and some .jpg). Same seed, same files. Returns files written."""
    written = 0
    for index, label in enumerate(labels):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}:{label}")
        painter = painter_for(label, index)
        for n in range(per_label):
            image = draw_shape(painter, rng, size)
            suffix = ".jpg" if n % 4 == 3 else ".png"
            path = folder / f"{n:05d}{suffix}"
            if not path.exists():
                image.save(path, quality=92) if suffix == ".jpg" else image.save(path)
                written += 1
    return written


@task(name="generate-synthetic")
def generate_synthetic(root: str, labels: list[str], per_label: int, size: int = 64, seed: int = 0) -> str:
    written = generate(Path(root), labels, per_label, size, seed)
    get_run_logger().info("synthetic source: %d new files for %d labels in %s", written, len(labels), root)
    return root
