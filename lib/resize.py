"""Check that a downloaded body is a real image and, optionally, shrink it.

In: the raw bytes of one HTTP body (or ``file:`` URL) and ``ImageLimits``.
Out: ``Prepared``: the bytes to write and their extension (from the decoded format, never the
URL), or the reason the body is refused. Runs in the download's worker processes: every
function here is CPU-bound and must stay off the event loop.

A body is accepted only if it decodes completely (every byte of the first frame), is not a
placeholder (a side below ``min_side``, e.g. a 1x1 GIF) and not a decompression bomb (more than
``max_pixels`` pixels). With ``max_side`` set, a larger image is decoded at reduced size where
the format allows (JPEG DCT scaling through ``Image.draft``: 1/2, 1/4 or 1/8 of the size, for a
fraction of the work), resized so its longer side is ``max_side`` (aspect kept; Gaussian
antialiasing, then bilinear: ``resize_pixels``) and re-encoded as JPEG at ``quality``; an image
already within the limit is kept byte for byte. EXIF orientation is not applied, so a shrunk
image shows the same pixels training sees in a kept original.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lib.images import eight_bit, load_reduced
from lib.pixel_view import pixels_of

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
# A pixel counts as a Gaussian of sigma 0.5 (of its own width): shrinking by f, the blur that
# brings it to 0.5 of an output pixel is 0.5 * sqrt(f^2 - 1) (the scale-space rule image
# pyramids use). Below MIN_SIGMA it changes nothing.
PIXEL_SIGMA = 0.5
MIN_SIGMA = 0.25
_TO_BGR = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGR}


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

    data: bytes | None = None
    extension: str | None = None
    reason: str | None = None
    resized: bool = False


def prepare_image(body: bytes, limits: ImageLimits) -> Prepared:
    """Validate ``body`` fully; shrink it if it is larger than ``limits.max_side``."""
    try:
        with Image.open(io.BytesIO(body), formats=IMAGE_FORMATS) as image:
            # the whole body to the decoder in one call: by default PIL feeds it 64 KiB pieces,
            # each copied twice on the way (2% of decoding a photo); the body is in memory anyway
            image.decodermaxblock = max(len(body), image.decodermaxblock)
            reason = size_problem(image.size, limits)
            if reason is not None:
                return Prepared(reason=reason)
            extension = extension_of(image.format)
            if limits.max_side is None or max(image.size) <= limits.max_side:
                image.load()  # decodes every byte of the first frame: catches truncated bodies
                return Prepared(data=body, extension=extension)
            data = shrink(image, max_side=limits.max_side, quality=limits.quality)
            return Prepared(data=data, extension="jpg", resized=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return Prepared(reason=DECOMPRESSION_BOMB)
    except UnidentifiedImageError:
        return Prepared(reason=NOT_AN_IMAGE)
    # the errors PIL's decoders raise on bad data; anything else is a bug and propagates
    except (OSError, EOFError, SyntaxError, ValueError, struct.error) as err:
        truncated = isinstance(err, EOFError) or "truncated" in str(err).lower()
        return Prepared(reason=TRUNCATED_IMAGE if truncated else CORRUPT_IMAGE)


def check_header(path: str, limits: ImageLimits) -> tuple[tuple[int, int] | None, str | None]:
    """``(size, None)`` from the file's header alone (no decoding), or ``(None, reason)``.

    The cheap check of an image already on disk: every file there was decoded completely
    before it was written, and written atomically.
    """
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            size = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, DECOMPRESSION_BOMB
    except UnidentifiedImageError:
        return None, NOT_AN_IMAGE
    except (OSError, EOFError, SyntaxError, ValueError, struct.error):
        return None, CORRUPT_IMAGE
    reason = size_problem(size, limits)
    return (None, reason) if reason else (size, None)


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


def fit_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is ``max_side``, aspect kept (each side >= 1)."""
    width, height = size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(image: Image.Image, *, max_side: int, quality: int) -> bytes:
    """JPEG bytes of ``image`` (opened, not loaded) with its longer side ``max_side``."""
    size = fit_size(image.size, max_side)
    image = _jpeg_mode(load_reduced(image, size))
    pixels = pixels_of(image)  # no copy: RGB as H x W x 4, the fourth band unused
    if image.size != size:  # JPEG's reduced decoding may already give exactly the size
        pixels = resize_pixels(pixels, size)
    return encode_jpeg(pixels, quality)


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of ``pixels`` (uint8: H x W x 3 RGB, H x W x 4 RGB and an unused band, as
    ``pixels_of`` gives, or H x W grayscale) at ``quality``.

    OpenCV's encoder: byte for byte what Pillow's ``save(..., "JPEG", quality=...)`` writes
    (both run libjpeg-turbo with the same defaults, 4:2:0 chroma), without building a PIL
    image first: about 0.1 ms a photo less, a quarter of the encoding."""
    if pixels.ndim == 3:  # OpenCV stores BGR
        pixels = cv2.cvtColor(pixels, _TO_BGR[pixels.shape[2]])
    encoded, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not encoded:  # cannot happen for uint8 RGB(X) or grayscale: a bug, not a bad body
        raise RuntimeError(f"OpenCV could not encode a {pixels.shape} {pixels.dtype} array")
    return buffer.tobytes()


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (H x W or H x W x C, uint8) downscaled to ``size`` (width, height).

    A Gaussian prefilter (``PIXEL_SIGMA``) against aliasing, then bilinear sampling (OpenCV):
    a sixth of the time of Pillow's antialiased bicubic on what JPEG's reduced decoding leaves
    (a factor below 2), and softer: on the benchmark photos 2.8 dB PSNR below it after JPEG
    draft decoding, more on formats shrunk from full size (both against a Lanczos resize of
    the full image). Fine stripes come out flat grey, as they must, not as moire.
    """
    height, width = pixels.shape[:2]
    sigma_x = PIXEL_SIGMA * math.sqrt(max((width / size[0]) ** 2 - 1, 0.0))
    sigma_y = PIXEL_SIGMA * math.sqrt(max((height / size[1]) ** 2 - 1, 0.0))
    if max(sigma_x, sigma_y) >= MIN_SIGMA:
        pixels = cv2.GaussianBlur(pixels, (0, 0), sigmaX=max(sigma_x, 1e-3),
                                  sigmaY=max(sigma_y, 1e-3))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)


def _jpeg_mode(image: Image.Image) -> Image.Image:
    """``image`` in a mode JPEG stores, converted as ``lib.images.load_rgb`` converts it."""
    image = eight_bit(image)
    return image if image.mode in ("RGB", "L") else image.convert("RGB")
