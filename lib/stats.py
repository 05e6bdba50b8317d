"""Exact per-channel mean and std of a set of images, in parallel.

In: image paths, decoded to 8-bit RGB exactly as the training loader decodes them
(lib.images.load_rgb: grayscale, palette, alpha, CMYK and 16-bit images converted the same way),
optionally resized to a square `size` as the evaluation transform does; the number of worker
processes. Out: ImageStats with mean and std per channel (pixel values scaled to 0..1), the image
and pixel counts and the files that could not be read.

Each worker counts, per channel, how many pixels take each of the 256 values (an exact integer
histogram), over chunks of images; histograms from every worker are added, and mean and variance
come from the merged histogram in float64. Integer counts make the merge exact and the result
independent of the order and the chunking, and counting uint8 values is far cheaper than
summing x and x^2 in float64. Memory is constant: only 3 x 256 counts per worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from PIL import UnidentifiedImageError
from tqdm import tqdm

from lib.errors import UserError
from lib.images import load_rgb_array

log = logging.getLogger(__name__)
CHUNK = 32  # images per task: enough that inter-process overhead is small, small enough to balance
LEVELS = np.arange(256, dtype=np.float64) / 255.0


@dataclass
class ImageStats:
    mean: list[float]
    std: list[float]
    images: int
    pixels: int
    size: int | None = None  # None: native resolution
    unreadable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChannelHistograms:
    """Per-channel counts of each 8-bit value: (3, 256) int64, plus the image count."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros((3, 256), np.int64))
    images: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add_image(self, pixels: np.ndarray) -> None:
        for channel in range(3):
            self.counts[channel] += np.bincount(pixels[..., channel].ravel(), minlength=256)
        self.images += 1

    def merge(self, other: ChannelHistograms) -> None:
        self.counts += other.counts
        self.images += other.images
        self.unreadable += other.unreadable

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        pixels = self.counts[0].sum()
        mean = self.counts @ LEVELS / pixels
        var = self.counts @ np.square(LEVELS) / pixels - np.square(mean)
        return mean, np.sqrt(np.maximum(var, 0.0))


def read_pixels(path: str, size: int | None) -> np.ndarray:
    """uint8 (h, w, 3) as training sees it; resized with the same bilinear interpolation as
    albumentations' Resize when `size` is given."""
    pixels = load_rgb_array(path)
    if size is not None:
        pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
    return pixels


def histogram_chunk(paths: Sequence[str], size: int | None = None) -> ChannelHistograms:
    histograms = ChannelHistograms()
    for path in paths:
        try:
            pixels = read_pixels(path, size)
        except (OSError, UnidentifiedImageError, ValueError):
            histograms.unreadable.append(str(path))
            continue
        histograms.add_image(pixels)
    return histograms


def compute_stats(paths: Sequence[Path], *, workers: int = 0,
                  size: int | None = None) -> ImageStats:
    """Mean and std per RGB channel over every pixel of `paths`; `workers=0` uses every core."""
    workers = workers or os.cpu_count() or 1
    chunks = [[str(p) for p in paths[i:i + CHUNK]] for i in range(0, len(paths), CHUNK)]
    merged = ChannelHistograms()
    with Pool(workers) as pool, tqdm(total=len(paths), desc="stats", unit="img") as bar:
        for part in pool.imap_unordered(partial(histogram_chunk, size=size), chunks):
            merged.merge(part)
            bar.update(part.images + len(part.unreadable))
    if merged.images == 0:
        raise UserError(f"stats: none of the {len(paths)} images could be read")
    if merged.unreadable:
        log.warning("stats: %d unreadable images skipped, e.g. %s",
                    len(merged.unreadable), merged.unreadable[0])
    mean, std = merged.mean_std()
    return ImageStats(mean=mean.tolist(), std=std.tolist(), images=merged.images,
                      pixels=int(merged.counts[0].sum()), size=size,
                      unreadable=sorted(merged.unreadable))
