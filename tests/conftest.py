"""Shared fixtures: tiny real images written under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parent.parent


def write_image(path: Path, *, size: tuple[int, int] = (16, 12), mode: str = "RGB",
                seed: int = 0, fmt: str | None = None) -> Path:
    """A random image of `mode` at `path` (format from the suffix unless `fmt` is given)."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """An ImageFolder tree like the download stage writes: 3 labels x 6 train images,
    2 labels x 2 validation images, 4 test images."""
    root = tmp_path / "images"
    seed = 0
    for label in (1, 2, 3):
        for image_id in range(6):
            seed += 1
            write_image(root / "train" / f"{label:02d}" / f"{label * 100 + image_id}.png",
                        seed=seed)
    for label in (1, 2):
        for image_id in range(2):
            seed += 1
            write_image(root / "validation" / f"{label:02d}" / f"{label * 10 + image_id}.jpg",
                        seed=seed)
    for image_id in range(4):
        seed += 1
        write_image(root / "test" / f"{image_id + 1}.png", seed=seed)
    return root
