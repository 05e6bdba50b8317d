"""Open an image file the way every stage sees it: decoded, converted to 8-bit RGB.

In: a path. Out: a PIL RGB image, or a numpy uint8 array of shape (height, width, 3).
Listing: the image files under a folder; the test images with the id each file is named by.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from lib.common.ids import id_order, is_id_text

log = logging.getLogger(__name__)
# every extension the download writes (lib.acquire.resize.STORED_EXTENSIONS), and common spellings
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}

# What PIL's decoders raise on a file that is not a whole image (truncated, empty, corrupt,
# a decompression bomb); anything else is a bug and propagates
DECODE_ERRORS = (
    OSError,
    EOFError,
    SyntaxError,
    ValueError,
    struct.error,
    Image.DecompressionBombError,
)


# Formats whose decoder can decode at reduced size: JPEG, and MPO (JPEG frames: many camera
# and phone photos), whose first frame is the picture.
DRAFT_FORMATS = ("JPEG", "MPO")


def load_rgb(path: Path | str, *, min_size: int | None = None) -> Image.Image:
    """Decode `path` fully and convert it to RGB (grayscale, palette, alpha, CMYK, 16-bit).

    `min_size`: a JPEG at least twice as large on both sides is decoded at a reduced size that
    keeps both sides >= min_size (`load_reduced`); other formats and smaller JPEGs decode at
    full size."""
    with Image.open(path) as image:
        if min_size is None:
            image.load()
        else:
            load_reduced(image, (min_size, min_size))
        return eight_bit(image).convert("RGB")


def load_reduced(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Decode `image` (opened, not loaded) at the smallest scale that keeps its width and
    height >= `size`'s.

    JPEG decoders scale by 1/2, 1/4 or 1/8 inside the inverse DCT (PIL's `draft`), so a 4x
    reduction decodes several times faster; other formats decode at full size. Every byte is
    still read, so a truncated file still fails."""
    if image.format in DRAFT_FORMATS:
        image.draft(image.mode, size)
    image.load()
    return image


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def eight_bit(image: Image.Image) -> Image.Image:
    """16/32-bit grayscale scaled to 8-bit L (convert() would clip at 255); others as they are."""
    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    pixels = np.asarray(image, dtype=np.float64)
    peak = 65535.0 if image.mode.startswith("I;16") else max(pixels.max(), 1.0)
    return Image.fromarray(np.round(pixels / peak * 255).astype(np.uint8), mode="L")


def load_rgb_array(path: Path | str, *, min_size: int | None = None) -> np.ndarray:
    return np.asarray(load_rgb(path, min_size=min_size))


def decode_problem(path: Path | str) -> str | None:
    """None when ``path`` decodes as the stages decode it (``load_rgb``), else why not, in a
    few words. A JPEG is decoded at an eighth of its size: every byte is still read, so a
    truncated or corrupt file fails as at full size, for a fraction of the work."""
    try:
        load_rgb(path, min_size=1)
    except DECODE_ERRORS as err:
        return str(err) or type(err).__name__
    return None


def list_images(folder: Path) -> list[Path]:
    """Every image file under `folder` (recursively), sorted, skipping temp files."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def list_test_images(folder: Path) -> tuple[list[Path], list[str]]:
    """The test images directly in `folder` (``<image_id>.<ext>``, as the download writes them)
    and their ids' text, in id order (``lib.common.ids.id_order``). Other image files
    (``5 (1).jpg``, ``a.b.png``, a second file of one id, anything in a subfolder) are skipped
    with a warning naming them: the submission's rows come from the competition's test list, so
    a stray file could only add a row it drops."""
    found: dict[str, Path] = {}
    strays = []
    for path in list_images(folder):
        image_id = path.stem if path.parent == folder and is_id_text(path.stem) else None
        if image_id is None or image_id in found:
            strays.append(path)
        else:
            found[image_id] = path
    if strays:
        log.warning(
            "%s: skipped %d files not named <image_id>.<ext> as the download names test images: %s",
            folder,
            len(strays),
            ", ".join(str(p.relative_to(folder)) for p in strays[:5]),
        )
    ids = sorted(found, key=id_order)
    return [found[i] for i in ids], ids
