"""lib.pixel_view: a decoded image's pixels without a copy, or a copy where no view can be had."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PIL import Image

from lib.pixel_view import pixels_of


def photo(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    width, height = size
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return image if mode == "RGB" else image.convert(mode)


def test_rgb_is_a_view_of_four_bytes_per_pixel():
    image = photo((300, 200))
    pixels = pixels_of(image)
    assert pixels.shape == (200, 300, 4) and pixels.dtype == np.uint8
    assert np.array_equal(pixels[..., :3], np.asarray(image))
    assert not pixels.flags.writeable
    image.putpixel((7, 5), (1, 2, 3))  # the image's own memory: the view sees the change
    assert tuple(pixels[5, 7, :3]) == (1, 2, 3)


def test_grayscale_is_a_view_of_one_byte_per_pixel():
    image = photo((300, 200), "L")
    pixels = pixels_of(image)
    assert pixels.shape == (200, 300)
    assert np.array_equal(pixels, np.asarray(image))
    image.putpixel((7, 5), 9)
    assert pixels[5, 7] == 9


def test_the_view_outlives_the_image():
    image = photo((300, 200))
    expected = np.asarray(image).copy()
    pixels = pixels_of(image)[10:, 20:]  # a view of the view keeps the memory too
    image.close()
    del image
    gc.collect()
    Image.new("RGB", (300, 200), (255, 255, 255))  # would reuse freed memory
    assert np.array_equal(pixels[..., :3], expected[10:, 20:])


@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16", "1", "F", "CMYK"])
def test_other_modes_are_copied_as_numpy_copies_them(mode):
    image = photo((30, 20), mode)
    assert np.array_equal(pixels_of(image), np.asarray(image))


def test_an_image_in_several_memory_blocks_is_copied():
    # Pillow allocates large images in blocks of 16 MiB: its rows are then not one buffer
    image = Image.new("RGB", (3000, 2000), (10, 20, 30))
    pixels = pixels_of(image)
    assert pixels.shape == (2000, 3000, 3)
    assert (pixels == (10, 20, 30)).all()
