import numpy as np
import pytest
from PIL import Image

from lib.images import list_images, load_rgb, load_rgb_array
from tests.conftest import write_image


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    if mode == "CMYK":
        path = tmp_path / "x.jpg"
        Image.new("CMYK", (5, 4), (0, 255, 0, 0)).save(path)
    else:
        path = write_image(tmp_path / f"x{suffix}", size=(5, 4), mode=mode)
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (5, 4)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    pixels = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)
    array = load_rgb_array(path)
    assert array.shape == (1, 3, 3)
    assert array[0, :, 0].tolist() == [0, 128, 255]


def test_list_images_skips_temp_and_other_files(tmp_path):
    write_image(tmp_path / "a" / "1.png")
    write_image(tmp_path / "a" / ".tmp-2.png")
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["1.png"]
