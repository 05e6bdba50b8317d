"""Check that a downloaded body is a real image and, optionally, shrink it.

In: the raw bytes of one HTTP body (or ``file:`` URL) and ``ImageLimits``.
Out: ``Prepared``: the bytes to write and their extension (from the decoded format, never the
URL), or the reason the body is refused. Runs in the download's worker processes, one per
core: every function here is CPU-bound.

A body is accepted only if it decodes completely (every byte of the first frame), is not a
placeholder (a side below ``min_side``, e.g. a 1x1 GIF) and not a decompression bomb (more than
``max_pixels`` pixels). PIL opens every body (format and size from the header). With
``max_side`` set, a larger image is decoded at reduced size where the format allows (a JPEG by
OpenCV, with libjpeg's DCT scaling: 1/2, 1/4 or 1/8 of the size, for a fraction of the work;
other formats by PIL), resized so its longer side is ``max_side`` (aspect kept; Gaussian
antialiasing, then bilinear: ``resize_pixels``) and re-encoded as JPEG at ``quality``; an image
already within the limit is decoded by PIL and kept byte for byte. EXIF orientation is not
applied, so a shrunk image shows the same pixels training sees in a kept original.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lib.acquire.oskit import stderr_muted
from lib.common.images import DRAFT_FORMATS, eight_bit, load_reduced

NOT_AN_IMAGE = "not_an_image"
TRUNCATED_IMAGE = "truncated_image"
CORRUPT_IMAGE = "corrupt_image"
PLACEHOLDER = "placeholder"
DECOMPRESSION_BOMB = "decompression_bomb"

# Formats PIL may try. Anything else (ICO favicons, EPS that needs ghostscript, PSD...) is no
# training image and counts as not_an_image; the list also keeps rarely used decoders away
# from bytes fetched off the internet.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}  # others: the format in lower case
JPEG_MODES = ("RGB", "L")  # what a JPEG stores (and OpenCV decodes); other modes are converted
# A pixel counts as a Gaussian of sigma 0.5 (of its own width): shrinking by f, the blur that
# brings it to 0.5 of an output pixel is 0.5 * sqrt(f^2 - 1) (the scale-space rule image
# pyramids use). Below MIN_SIGMA it changes nothing.
PIXEL_SIGMA = 0.5
MIN_SIGMA = 0.25
# The Gaussian is cut at 1.5 sigma, not OpenCV's 3 (8-bit images): three taps for the sigmas
# JPEG's reduced decoding leaves (below 0.9), which still flatten stripes at the output's
# Nyquist frequency, in less time than the longer kernel.
KERNEL_SIGMAS = 1.5
# OpenCV's imdecode flags for JPEG's reduced decoding (by 1, 2, 4 or 8), color and gray; EXIF
# orientation is left alone, as everywhere else
_OPENCV_REDUCED = {
    1: (cv2.IMREAD_COLOR, cv2.IMREAD_GRAYSCALE),
    2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
}


@dataclass(frozen=True)
class ImageLimits:
    """What a body must satisfy to be kept, and how it is shrunk."""

    min_side: int = 8  # pixels; smaller on either side = placeholder
    max_pixels: int = 89_478_485  # width * height above this = decompression bomb (PIL default)
    max_side: int | None = None  # longer side after shrinking; None keeps the originals
    quality: int = 90  # JPEG quality of shrunk images


@dataclass(frozen=True)
class Prepared:
    """The bytes to write and their extension, or the reason the body was refused."""

    data: bytes | bytearray | None = None
    extension: str | None = None
    reason: str | None = None
    resized: bool = False


def prepare_image(body: bytes | bytearray, limits: ImageLimits) -> Prepared:
    """Validate ``body`` fully; shrink it if it is larger than ``limits.max_side``."""
    try:
        with Image.open(io.BytesIO(body), formats=IMAGE_FORMATS) as image:
            # the whole body to the decoder in one call: by default PIL feeds it 64 KiB pieces,
            # each copied twice on the way, and the body is in memory anyway
            image.decodermaxblock = max(len(body), image.decodermaxblock)
            reason = size_problem(image.size, limits)
            if reason is not None:
                return Prepared(reason=reason)
            extension = extension_of(image.format)
            if limits.max_side is None or max(image.size) <= limits.max_side:
                image.load()  # decodes every byte of the first frame: catches truncated bodies
                return Prepared(data=body, extension=extension)
            data = shrink(image, body, max_side=limits.max_side, quality=limits.quality)
            return Prepared(data=data, extension="jpg", resized=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return Prepared(reason=DECOMPRESSION_BOMB)
    except UnidentifiedImageError:
        return Prepared(reason=NOT_AN_IMAGE)
    # the errors PIL's decoders raise on bad data; anything else is a bug and propagates
    except (OSError, EOFError, SyntaxError, ValueError, struct.error) as err:
        truncated = isinstance(err, EOFError) or "truncated" in str(err).lower()
        return Prepared(reason=TRUNCATED_IMAGE if truncated else CORRUPT_IMAGE)


def check_header(path: str, limits: ImageLimits) -> tuple[tuple[int, int] | None, str | None, bool]:
    """``(size, None, ends_complete)`` from the file's header and last bytes alone (no
    decoding), or ``(None, reason, False)``.

    The cheap check of an image already on disk: every file there was decoded completely
    before it was written, and written atomically, but may have been cut short or emptied since
    (a copy by another tool, a full disk). ``ends_complete`` (``ends_like_a_whole_file``) False
    means only that this check cannot tell: decoding the file decides.
    """
    try:
        with open(path, "rb") as handle, Image.open(handle, formats=IMAGE_FORMATS) as image:
            size, image_format = image.size, image.format
            complete = ends_like_a_whole_file(handle.fileno(), image_format)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, DECOMPRESSION_BOMB, False
    except UnidentifiedImageError:
        return None, NOT_AN_IMAGE, False
    except (OSError, EOFError, SyntaxError, ValueError, struct.error):
        return None, CORRUPT_IMAGE, False
    reason = size_problem(size, limits)
    return (None, reason, False) if reason else (size, None, complete)


_JPEG_END = b"\xff\xd9"  # the end-of-image marker
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, CRC


def ends_like_a_whole_file(fd: int, image_format: str | None) -> bool:
    """Whether the open file ``fd`` ends where a whole file of its format ends: a JPEG with
    its end-of-image marker, a PNG with its IEND chunk, a WebP at the length its RIFF header
    gives. A file cut short almost never does. False for the other formats (no such cheap
    sign) and for files with bytes after the end, which decoders accept: decode those."""
    size = os.fstat(fd).st_size
    if image_format in DRAFT_FORMATS:  # JPEG, and MPO: JPEG frames, the last one ends it
        return size >= 2 and os.pread(fd, 2, size - 2) == _JPEG_END
    if image_format == "PNG":
        return (
            size >= len(_PNG_END) and os.pread(fd, len(_PNG_END), size - len(_PNG_END)) == _PNG_END
        )
    if image_format == "WEBP":  # "RIFF", then the length of everything after these 8 bytes
        header = os.pread(fd, 8, 0)
        return len(header) == 8 and struct.unpack("<I", header[4:])[0] + 8 == size
    return False


def size_problem(size: tuple[int, int], limits: ImageLimits) -> str | None:
    """The reason an image of ``size`` is refused before decoding, or None."""
    width, height = size
    if width * height > limits.max_pixels:
        return DECOMPRESSION_BOMB
    if min(width, height) < limits.min_side:
        return PLACEHOLDER
    return None


def extension_of(image_format: str | None) -> str:
    image_format = image_format or ""
    return _EXTENSIONS.get(image_format, image_format.lower())


# the extensions the download writes images under, one per accepted format
STORED_EXTENSIONS = frozenset(extension_of(name) for name in IMAGE_FORMATS)


def fit_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is ``max_side``, aspect kept (each side >= 1)."""
    width, height = size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(image: Image.Image, body: bytes | bytearray, *, max_side: int, quality: int) -> bytes:
    """JPEG bytes of ``image`` (opened from ``body``, not loaded) with its longer side
    ``max_side``."""
    size = fit_size(image.size, max_side)
    pixels = decode_jpeg_reduced(image, body, size)
    if pixels is None:  # other formats and modes, or a JPEG OpenCV refused: PIL says why
        pixels = np.asarray(_jpeg_mode(load_reduced(image, size)))
        if pixels.ndim == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if (pixels.shape[1], pixels.shape[0]) != size:  # reduced decoding may give exactly the size
        pixels = resize_pixels(pixels, size)
    return encode_jpeg(pixels, quality)


def decode_jpeg_reduced(
    image: Image.Image, body: bytes | bytearray, size: tuple[int, int]
) -> np.ndarray | None:
    """``body``, a JPEG that PIL opened as ``image`` (not loaded), decoded by OpenCV at the
    largest reduction (none, 1/2, 1/4, 1/8) that keeps both sides >= ``size``: BGR, or gray for a
    grayscale JPEG. None for other formats, for CMYK (PIL converts it, as ``lib.common.images``
    does) and for a body OpenCV cannot decode completely (truncated or broken: PIL, decoding
    it next, says which).

    The same libjpeg-turbo as PIL's reduced decoding (``Image.draft``), but straight into the
    array that is resized and encoded (PIL holds RGB as four bytes a pixel, which numpy's copy
    then packs into three), and at full quality (accurate DCT, smooth chroma upsampling), where
    PIL's draft takes the fast, coarse variants.
    """
    if image.format not in DRAFT_FORMATS or image.mode not in JPEG_MODES:
        return None
    color, gray = _OPENCV_REDUCED[jpeg_reduction(image.size, size)]
    flags = (gray if image.mode == "L" else color) | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        with stderr_muted():  # libjpeg prints warnings there ("Corrupt JPEG data: ...")
            return cv2.imdecode(np.frombuffer(body, np.uint8), flags)
    except cv2.error:  # e.g. above OpenCV's own pixel limit: PIL's limits decide
        return None


def jpeg_reduction(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The divisor of JPEG's reduced decoding for an image of ``size``: the largest of 8, 4, 2
    and 1 that keeps both sides >= ``target``'s, as ``Image.draft`` (``load_reduced``) picks
    it."""
    factor = min(size[0] // target[0], size[1] // target[1])
    return next((divisor for divisor in (8, 4, 2) if divisor <= factor), 1)


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of ``pixels`` (uint8, H x W x 3 in OpenCV's BGR order, or H x W grayscale)
    at ``quality``.

    OpenCV's encoder: byte for byte what Pillow's ``save(..., "JPEG", quality=...)`` writes
    (both run libjpeg-turbo with the same defaults, 4:2:0 chroma), without building a PIL
    image first."""
    encoded, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not encoded:  # cannot happen for uint8 BGR or grayscale: a bug, not a bad body
        raise RuntimeError(f"OpenCV could not encode a {pixels.shape} {pixels.dtype} array")
    return buffer.tobytes()


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (H x W or H x W x C, uint8) downscaled to ``size`` (width, height).

    A Gaussian prefilter (``PIXEL_SIGMA``, ``KERNEL_SIGMAS``) against aliasing, then bilinear
    sampling (OpenCV): a fraction of the time of Pillow's antialiased bicubic on what JPEG's
    reduced decoding leaves (a factor below 2), and a little softer. Fine stripes come out flat
    grey, as they must, not as moire.
    """
    height, width = pixels.shape[:2]
    sigma_x = PIXEL_SIGMA * math.sqrt(max((width / size[0]) ** 2 - 1, 0.0))
    sigma_y = PIXEL_SIGMA * math.sqrt(max((height / size[1]) ** 2 - 1, 0.0))
    if max(sigma_x, sigma_y) >= MIN_SIGMA:
        pixels = cv2.GaussianBlur(
            pixels,
            (_taps(sigma_x), _taps(sigma_y)),
            sigmaX=max(sigma_x, 1e-3),
            sigmaY=max(sigma_y, 1e-3),
        )
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)


def _taps(sigma: float) -> int:
    """The Gaussian kernel's width: out to ``KERNEL_SIGMAS`` sigma on each side, at least 3."""
    return 2 * max(1, round(KERNEL_SIGMAS * sigma)) + 1


def _jpeg_mode(image: Image.Image) -> Image.Image:
    """``image`` in a mode JPEG stores, converted as ``lib.common.images.load_rgb`` converts it."""
    image = eight_bit(image)
    return image if image.mode in JPEG_MODES else image.convert("RGB")
