"""Exact per-channel mean and std of a set of images, in parallel.

In: image paths (decoded as RGB, values scaled to 0..1). Out: ImageStats with mean and std per
channel, pixel and image counts and the unreadable files. Each worker process sums x and x^2
over every pixel of a chunk of images in float64; the sums are merged, so the result is the
exact population statistic, not an average of per-batch stds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError
from tqdm import tqdm

from lib.errors import UserError
from lib.images import load_rgb_array

log = logging.getLogger(__name__)
CHUNK = 64  # images per task: large enough that inter-process overhead stays small


@dataclass
class ImageStats:
    mean: list[float]
    std: list[float]
    images: int
    pixels: int
    unreadable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Sums:
    pixels: int
    total: np.ndarray      # (3,) float64 sum of x
    total_sq: np.ndarray   # (3,) float64 sum of x^2
    images: int
    unreadable: list[str]


def _sum_chunk(paths: Sequence[str]) -> _Sums:
    sums = _Sums(0, np.zeros(3), np.zeros(3), 0, [])
    for path in paths:
        try:
            pixels = load_rgb_array(path).reshape(-1, 3).astype(np.float64) / 255.0
        except (OSError, UnidentifiedImageError, ValueError):
            sums.unreadable.append(str(path))
            continue
        sums.pixels += len(pixels)
        sums.total += pixels.sum(axis=0)
        sums.total_sq += np.square(pixels).sum(axis=0)
        sums.images += 1
    return sums


def compute_stats(paths: Sequence[Path], *, workers: int = 0) -> ImageStats:
    """Mean and std per RGB channel over every pixel of `paths`; `workers=0` uses every core."""
    workers = workers or os.cpu_count() or 1
    chunks = [[str(p) for p in paths[i:i + CHUNK]] for i in range(0, len(paths), CHUNK)]
    merged = _Sums(0, np.zeros(3), np.zeros(3), 0, [])
    with Pool(workers) as pool, tqdm(total=len(paths), desc="stats", unit="img") as bar:
        for sums in pool.imap_unordered(_sum_chunk, chunks):
            merged.pixels += sums.pixels
            merged.total += sums.total
            merged.total_sq += sums.total_sq
            merged.images += sums.images
            merged.unreadable += sums.unreadable
            bar.update(sums.images + len(sums.unreadable))
    if merged.images == 0:
        raise UserError(f"stats: none of the {len(paths)} images could be read")
    if merged.unreadable:
        log.warning("stats: %d unreadable images skipped, e.g. %s",
                    len(merged.unreadable), merged.unreadable[0])
    mean = merged.total / merged.pixels
    # E[x^2] - E[x]^2 in float64 is exact enough for 8-bit pixels (values in 0..1).
    var = np.maximum(merged.total_sq / merged.pixels - np.square(mean), 0.0)
    return ImageStats(mean=mean.tolist(), std=np.sqrt(var).tolist(), images=merged.images,
                      pixels=merged.pixels, unreadable=sorted(merged.unreadable))
