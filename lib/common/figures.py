"""Small PNG figures drawn with Pillow (no plotting library: they must open anywhere, offline).

In: numbers, labels or images. Out: a PNG file (written atomically).
- line_plot: one curve (optionally log-scaled x) with axes, tick labels and marked x values.
- panels_plot: several line panels side by side, each with several series (a colour per
  series, dashed or solid), under one legend: training curves with folds overlaid.
- heatmap: a labelled matrix, shaded by a value in [0, 1], each cell captioned when it is big
  enough to hold its text: a confusion matrix.
- image_grid: uint8 RGB images in a grid, a wrapped caption under each, and optionally a label
  on the left of each row.
Text uses Pillow's bundled scalable font (FreeType), so class names stay legible.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lib.common.fileio import atomic_path

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)  # matplotlib's tab10: tells ten series apart
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.cache
def font(size: int = 12) -> Font:
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: str = PALETTE[0]
    dashed: bool = False


@dataclass(frozen=True)
class Mark:
    """A vertical line at x, labelled."""

    x: float
    label: str
    colour: str = "red"


@dataclass(frozen=True)
class Panel:
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    log_x: bool = False
    marks: Sequence[Mark] = ()
    shade: tuple[float, float] | None = None  # an x range drawn in light grey


def _save(image: Image.Image, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", optimize=True)


def text_width(text: str, size: int = 12) -> float:
    return font(size).getlength(text)


def wrap(text: str, width_px: float, size: int = 12) -> list[str]:
    """`text`'s lines wrapped to `width_px` pixels (a word longer than that is cut)."""
    chars = max(int(width_px / max(text_width("n", size), 1.0)), 1)
    lines: list[str] = []
    for line in text.split("\n"):
        for piece in textwrap.wrap(line, chars, break_long_words=True) or [""]:
            while piece and text_width(piece, size) > width_px:
                piece = piece[:-1]
            lines.append(piece)
    return lines


def _ticks(low: float, high: float, *, log: bool, integers: bool) -> list[float]:
    if log:
        first, last = math.floor(low), math.ceil(high)
        return [float(t) for t in range(first, last + 1) if low - 1e-9 <= t <= high + 1e-9] or [
            low,
            high,
        ]
    if integers:
        step = max(math.ceil((high - low) / 6), 1)
        return [float(t) for t in range(math.ceil(low), math.floor(high) + 1, step)] or [low]
    return [low + (high - low) * i / 4 for i in range(5)]


def _tick_text(value: float, *, log: bool) -> str:
    return f"1e{int(value)}" if log else f"{value:.3g}"


def _dashed(
    draw: ImageDraw.ImageDraw,
    points: list[tuple[float, float]],
    colour: str,
    width: int,
    dash: float = 6.0,
) -> None:
    """A polyline drawn in dashes of `dash` pixels with gaps as long."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        length = math.hypot(x1 - x0, y1 - y0)
        done = 0.0
        while done < length:
            step = min(left, length - done)
            a, b = done / length, (done + step) / length
            if on:
                draw.line(
                    [
                        (x0 + (x1 - x0) * a, y0 + (y1 - y0) * a),
                        (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b),
                    ],
                    fill=colour,
                    width=width,
                )
            done += step
            left -= step
            if left <= 1e-9:
                on, left = not on, dash


def draw_panel(image: Image.Image, box: tuple[int, int, int, int], panel: Panel) -> None:
    """One panel inside `box` (left, top, right, bottom) of `image`: axes, ticks, series,
    marks."""
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 62, x1 - 12, y0 + 26, y1 - 44
    fx = (lambda v: math.log10(v)) if panel.log_x else (lambda v: float(v))
    xs = [fx(x) for s in panel.series for x in s.xs if x > 0 or not panel.log_x]
    xs += [fx(m.x) for m in panel.marks if m.x > 0 or not panel.log_x]
    ys = [float(y) for s in panel.series for y in s.ys if math.isfinite(y)]
    draw.text((left, y0 + 4), panel.title, fill="black", font=font(14))
    draw.rectangle([left, top, right, bottom], outline="black")
    if not xs or not ys:
        draw.text((left + 10, top + 10), "no data", fill="grey", font=font(12))
        return
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    pad = (y_high - y_low) * 0.05 or abs(y_high) * 0.05 or 0.5
    y_low, y_high = y_low - pad, y_high + pad
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

    def px(x: float) -> float:
        return left + (x - x_low) / x_span * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y_low) / y_span * (bottom - top)

    if panel.shade is not None:
        a, b = (px(fx(v)) for v in panel.shade)
        draw.rectangle([min(a, b), top + 1, max(a, b), bottom - 1], fill="#e8e8e8")
    integers = not panel.log_x and all(float(x).is_integer() for s in panel.series for x in s.xs)
    for t in _ticks(x_low, x_high, log=panel.log_x, integers=integers):
        label = _tick_text(t, log=panel.log_x)
        draw.line([(px(t), bottom), (px(t), bottom + 4)], fill="black")
        draw.text(
            (px(t) - text_width(label, 11) / 2, bottom + 6), label, fill="black", font=font(11)
        )
    for t in _ticks(y_low, y_high, log=False, integers=False):
        label = f"{t:.3g}"
        draw.line([(left - 4, py(t)), (left, py(t))], fill="black")
        draw.text((left - 6 - text_width(label, 11), py(t) - 6), label, fill="black", font=font(11))
    draw.text(
        ((left + right) / 2 - text_width(panel.x_label, 12) / 2, bottom + 24),
        panel.x_label,
        fill="black",
        font=font(12),
    )
    y_title = Image.new("RGBA", (int(text_width(panel.y_label, 12)) + 4, 16), (255, 255, 255, 0))
    ImageDraw.Draw(y_title).text((2, 1), panel.y_label, fill="black", font=font(12))
    y_title = y_title.rotate(90, expand=True)
    image.paste(y_title, (x0 + 2, int((top + bottom) / 2 - y_title.height / 2)), y_title)
    for series in panel.series:
        points = [
            (px(fx(x)), py(y))
            for x, y in zip(series.xs, series.ys, strict=True)
            if math.isfinite(y) and (x > 0 or not panel.log_x)
        ]
        if len(points) == 1:
            x, y = points[0]
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=series.colour)
        elif series.dashed:
            _dashed(draw, points, series.colour, 2)
        elif points:
            draw.line(points, fill=series.colour, width=2)
        for x, y in points if len(points) <= 40 else []:  # markers while they stay apart
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=series.colour)
    for i, mark in enumerate(panel.marks):
        x = px(fx(mark.x))
        draw.line([(x, top), (x, bottom)], fill=mark.colour, width=2)
        draw.text((x + 4, top + 4 + 15 * i), mark.label, fill=mark.colour, font=font(12))


def line_plot(
    xs: Sequence[float],
    ys: Sequence[float],
    path: Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    mark_x: float | None = None,
    marks: Sequence[Mark] = (),
    shade: tuple[float, float] | None = None,
    size: tuple[int, int] = (640, 420),
) -> None:
    """One curve; `mark_x` (a red line labelled with its value) and `marks` drawn over it."""
    every = [*marks, *([Mark(mark_x, f"{mark_x:.2g}")] if mark_x is not None else [])]
    panels_plot(
        [
            Panel(
                title, x_label, y_label, [Series("", xs, ys)], log_x=log_x, marks=every, shade=shade
            )
        ],
        path,
        panel_size=size,
    )


def panels_plot(
    panels: Sequence[Panel],
    path: Path,
    *,
    cols: int = 2,
    panel_size: tuple[int, int] = (520, 360),
    legend: Sequence[tuple[str, str, bool]] = (),
) -> None:
    """Panels in a grid of `cols` columns; `legend`: (label, colour, dashed) entries drawn in
    one row above them."""
    cols = max(min(cols, len(panels)), 1)
    rows = max(math.ceil(len(panels) / cols), 1)
    legend_h = 28 if legend else 0
    width, height = panel_size
    image = Image.new("RGB", (cols * width, rows * height + legend_h), "white")
    draw = ImageDraw.Draw(image)
    x = 62
    for label, colour, dashed in legend:
        line = [(float(x), legend_h / 2), (x + 28.0, legend_h / 2)]
        _dashed(draw, line, colour, 2) if dashed else draw.line(line, fill=colour, width=2)
        draw.text((x + 34, legend_h / 2 - 7), label, fill="black", font=font(12))
        x += 34 + int(text_width(label, 12)) + 22
    for i, panel in enumerate(panels):
        left, top = (i % cols) * width, legend_h + (i // cols) * height
        draw_panel(image, (left, top, left + width, top + height), panel)
    _save(image, path)


def _shade(value: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1)."""
    v = min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0
    low, high = np.array([255, 255, 255]), np.array([8, 48, 107])
    red, green, blue = (int(c) for c in low + (high - low) * v)
    return red, green, blue


def heatmap(
    shade: np.ndarray,
    path: Path,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    texts: Sequence[Sequence[str]] | None,
    title: str,
    x_label: str,
    y_label: str,
    max_label: int = 24,
) -> None:
    """An n x m grid of cells shaded by `shade` (values in [0, 1]), rows and columns labelled
    (names cut at `max_label` characters), each cell captioned with texts[i][j] when it fits;
    the diagonal outlined."""
    n, m = shade.shape
    cell = int(min(max(640 // max(n, m), 10), 64))
    size = int(min(max(cell * 0.32, 9), 13))
    rows = [str(t)[:max_label] for t in row_labels]
    cols = [str(t)[:max_label] for t in col_labels]
    left = int(max((text_width(t, size) for t in rows), default=0)) + 34
    below = int(max((text_width(t, size) for t in cols), default=0)) + 34
    top = 36
    width = max(left + m * cell + 20, int(text_width(title, 14)) + 20)
    image = Image.new("RGB", (width, top + n * cell + below), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black", font=font(14))
    for i in range(n):
        for j in range(m):
            box = [left + j * cell, top + i * cell, left + (j + 1) * cell, top + (i + 1) * cell]
            draw.rectangle(box, fill=_shade(float(shade[i, j])), outline="#d0d0d0")
            text = texts[i][j] if texts is not None else ""
            if text and text_width(text, size) <= cell - 2 and size + 2 <= cell:
                colour = "white" if float(shade[i, j]) > 0.5 else "black"
                draw.text(
                    (box[0] + (cell - text_width(text, size)) / 2, box[1] + (cell - size) / 2 - 1),
                    text,
                    fill=colour,
                    font=font(size),
                )
        draw.text(
            (left - 6 - text_width(rows[i], size), top + i * cell + (cell - size) / 2 - 1),
            rows[i],
            fill="black",
            font=font(size),
        )
    for k in range(min(n, m)):
        draw.rectangle(
            [left + k * cell, top + k * cell, left + (k + 1) * cell, top + (k + 1) * cell],
            outline="black",
        )
    for j, name in enumerate(cols):
        label = Image.new("RGBA", (int(text_width(name, size)) + 4, size + 4), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((2, 1), name, fill="black", font=font(size))
        label = label.rotate(90, expand=True)
        image.paste(label, (left + j * cell + (cell - label.width) // 2, top + n * cell + 4), label)
    draw.text(
        (left + m * cell / 2 - text_width(x_label, 12) / 2, image.height - 18),
        x_label,
        fill="black",
        font=font(12),
    )
    side = Image.new("RGBA", (int(text_width(y_label, 12)) + 4, 16), (255, 255, 255, 0))
    ImageDraw.Draw(side).text((2, 1), y_label, fill="black", font=font(12))
    side = side.rotate(90, expand=True)
    image.paste(side, (4, int(top + n * cell / 2 - side.height / 2)), side)
    _save(image, path)


def image_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: Path,
    *,
    cols: int = 8,
    cell: int = 128,
    row_labels: Sequence[str] | None = None,
) -> None:
    """Images in rows of `cols`, each scaled to fit a `cell` square (small ones blown up, so
    they can be seen), its caption wrapped to the cell's width under it; `row_labels`: one
    label per row, drawn on the left."""
    size, line_h = 11, 13
    rows = max(math.ceil(len(images) / cols), 1)
    wrapped = [wrap(caption, cell - 4, size) for caption in captions]
    caption_h = line_h * max((len(lines) for lines in wrapped), default=1) + 4
    label_w = 0
    if row_labels is not None:
        label_w = int(min(max((text_width(t, 12) for t in row_labels), default=0) + 12, 160))
    grid = Image.new("RGB", (label_w + cols * cell, rows * (cell + caption_h)), "white")
    draw = ImageDraw.Draw(grid)
    for r, label in enumerate(row_labels or []):
        lines = wrap(label, label_w - 8, 12)
        y = r * (cell + caption_h) + cell // 2 - 8 * len(lines)
        for k, text in enumerate(lines):
            draw.text((4, y + 16 * k), text, fill="black", font=font(12))
    for i, (pixels, lines) in enumerate(zip(images, wrapped, strict=True)):
        x, y = label_w + (i % cols) * cell, (i // cols) * (cell + caption_h)
        tile = Image.fromarray(pixels).convert("RGB")
        scale = cell / max(tile.size)
        tile = tile.resize(
            (max(round(tile.width * scale), 1), max(round(tile.height * scale), 1)),
            Image.Resampling.NEAREST,
        )
        grid.paste(tile, (x + (cell - tile.width) // 2, y + (cell - tile.height) // 2))
        for j, text in enumerate(lines):
            draw.text((x + 2, y + cell + 2 + line_h * j), text, fill="black", font=font(size))
    _save(grid, path)
