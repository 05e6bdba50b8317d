"""Small PNG figures drawn with Pillow (no plotting library needed).

In: numbers or images. Out: a PNG file.
- line_plot: y against x (optionally log-scaled x) with axes, tick labels and a marked x.
- image_grid: uint8 RGB images in a grid, a caption (one or more lines) under each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lib.common.fileio import atomic_path


def _save(image: Image.Image, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def line_plot(xs: Sequence[float], ys: Sequence[float], path: Path, *, title: str,
              x_label: str, y_label: str, log_x: bool = False, mark_x: float | None = None,
              size: tuple[int, int] = (640, 420)) -> None:
    width, height = size
    left, right, top, bottom = 70, 20, 30, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    x_values = [fx(x) for x in xs]
    x_low, x_high = min(x_values), max(x_values)
    finite = [y for y in ys if math.isfinite(y)]
    y_low, y_high = min(finite), max(finite)
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

    def point(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_low) / x_span * (width - left - right),
                height - bottom - (y - y_low) / y_span * (height - top - bottom))

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        y = y_low + y_span * i / 4
        _, py = point(x_low, y)
        draw.text((5, py - 6), f"{y:.3g}", fill="black")
        x = x_low + x_span * i / 4
        px, _ = point(x, y_low)
        draw.text((px - 20, height - bottom + 5), f"{10 ** x if log_x else x:.2g}", fill="black")
    draw.line([point(x, y) for x, y in zip(x_values, ys, strict=True) if math.isfinite(y)],
              fill="royalblue", width=2)
    if mark_x is not None:
        px, _ = point(fx(mark_x), y_low)
        draw.line([(px, top), (px, height - bottom)], fill="red", width=1)
        draw.text((px + 4, top + 4), f"{mark_x:.2g}", fill="red")
    draw.text((left + 90, 8), title, fill="black")
    draw.text((width // 2 - 20, height - 18), x_label, fill="black")
    draw.text((5, top - 22), y_label, fill="black")
    _save(image, path)


def image_grid(images: Sequence[np.ndarray], captions: Sequence[str], path: Path, *,
               cols: int = 8, cell: int = 128) -> None:
    rows = max(math.ceil(len(images) / cols), 1)
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    caption_h = 12 * lines + 2
    chars = max(cell // 6, 4)  # the default bitmap font is about 6 px per character
    grid = Image.new("RGB", (cols * cell, rows * (cell + caption_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (pixels, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % cols) * cell, (i // cols) * (cell + caption_h)
        tile = Image.fromarray(pixels).convert("RGB")
        scale = cell / max(tile.size)  # small images are blown up, so they can be seen
        tile = tile.resize((max(round(tile.width * scale), 1), max(round(tile.height * scale), 1)),
                           Image.Resampling.NEAREST)
        grid.paste(tile, (x + (cell - tile.width) // 2, y + (cell - tile.height) // 2))
        for j, text in enumerate(caption.split("\n")):
            draw.text((x + 2, y + cell + 12 * j), text[:chars], fill="black")
    _save(grid, path)
