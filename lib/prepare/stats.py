"""Exact per-channel mean and std of a set of images, in parallel.

In: image paths, decoded to 8-bit RGB exactly as the training loader decodes them
(lib.common.images.load_rgb: grayscale, palette, alpha, CMYK and 16-bit images converted the same
way), optionally resized to a square `size` as the evaluation transform does; the number of worker
processes. Out: ImageStats with mean and std per channel (pixel values scaled to 0..1), the image
and pixel counts and the files that could not be read.

Each worker adds up, per channel and in float64, the sum of x and of x^2 over every pixel of
its chunk of images (from OpenCV's SIMD mean/std of each uint8 image, which sums exactly in
integers inside one image); the workers' sums are added, and mean and variance come from the
totals, so the result is the population statistic over every pixel, not an average of per-batch
stds. Memory is constant: six numbers per worker, whatever the number of images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from lib.common.errors import UserError
from lib.common.images import DECODE_ERRORS, load_rgb_array
from lib.common.params import Config, integer, param, resolution
from lib.common.pools import process_pool, set_up_decode_worker
from lib.common.progress import progress

log = logging.getLogger(__name__)
CHUNK = 32  # images per task: enough that inter-process overhead is small, small enough to balance


@dataclass(frozen=True)
class StatsConfig(Config):
    """The stats stage's config (params.yaml's `stats` section)."""

    SECTION = "stats"

    resolution: int | str = param(resolution)  # native, or the square side images are resized to
    workers: int = param(integer(0), speed=True)  # processes: the sums are exact for any number

    @property
    def size(self) -> int | None:
        """The square side to resize to; None for the images' own size."""
        return None if self.resolution == "native" else int(self.resolution)


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
class ChannelSums:
    """Per-channel float64 sums of x and x^2 (x in 0..255) over `pixels` pixels."""

    total: np.ndarray = field(default_factory=lambda: np.zeros(3))
    total_sq: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pixels: int = 0
    images: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add_image(self, pixels: np.ndarray) -> None:
        count = pixels.shape[0] * pixels.shape[1]
        mean, std = (v.ravel() for v in cv2.meanStdDev(pixels))
        self.total += mean * count
        self.total_sq += (np.square(std) + np.square(mean)) * count
        self.pixels += count
        self.images += 1

    def merge(self, other: ChannelSums) -> None:
        self.total += other.total
        self.total_sq += other.total_sq
        self.pixels += other.pixels
        self.images += other.images
        self.unreadable += other.unreadable

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std with pixel values scaled to 0..1."""
        mean = self.total / self.pixels
        var = self.total_sq / self.pixels - np.square(mean)
        return mean / 255.0, np.sqrt(np.maximum(var, 0.0)) / 255.0


def read_pixels(path: str, size: int | None) -> np.ndarray:
    """uint8 (h, w, 3) as training sees it; resized with the same bilinear interpolation as
    albumentations' Resize when `size` is given."""
    pixels = load_rgb_array(path)
    if size is not None:
        pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
    return pixels


def sum_chunk(paths: Sequence[str], size: int | None = None) -> ChannelSums:
    sums = ChannelSums()
    for path in paths:
        try:
            pixels = read_pixels(path, size)
        except DECODE_ERRORS:  # the same images folds leaves out (lib.common.images.decode_problem)
            sums.unreadable.append(str(path))
            continue
        sums.add_image(pixels)
    return sums


def compute_stats(
    paths: Sequence[Path], *, workers: int = 0, size: int | None = None
) -> ImageStats:
    """Mean and std per RGB channel over every pixel of `paths`; `workers=0` uses every core."""
    chunks = [[str(p) for p in paths[i : i + CHUNK]] for i in range(0, len(paths), CHUNK)]
    merged = ChannelSums()
    with (
        process_pool(workers, initializer=set_up_decode_worker) as pool,
        progress(total=len(paths), desc="stats") as bar,
    ):
        for part in pool.imap_unordered(partial(sum_chunk, size=size), chunks):
            merged.merge(part)
            bar.update(part.images + len(part.unreadable))
    if merged.images == 0:
        raise UserError(f"stats: none of the {len(paths)} images could be read")
    if merged.unreadable:
        log.warning(
            "stats: %d unreadable images skipped, e.g. %s",
            len(merged.unreadable),
            merged.unreadable[0],
        )
    mean, std = merged.mean_std()
    return ImageStats(
        mean=mean.tolist(),
        std=std.tolist(),
        images=merged.images,
        pixels=merged.pixels,
        size=size,
        unreadable=sorted(merged.unreadable),
    )
