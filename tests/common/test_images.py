import numpy as np
import pytest
from PIL import Image

from lib.common.images import (
    decode_problem,
    list_images,
    list_test_images,
    load_reduced,
    load_rgb,
    load_rgb_array,
)
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


def test_jpeg_is_decoded_at_the_smallest_scale_that_keeps_the_size(tmp_path):
    # 2048 / 256 = 8: the JPEG decoder's smallest scale gives exactly the size asked for
    big = write_image(tmp_path / "big.jpg", size=(2048, 1024))
    with Image.open(big) as image:
        assert load_reduced(image, (256, 128)).size == (256, 128)
    # 1000 / 256 = 3.9: the scale is 1/2, never below the size asked for
    wide = write_image(tmp_path / "wide.jpg", size=(1000, 500))
    with Image.open(wide) as image:
        assert load_reduced(image, (256, 128)).size == (500, 250)
    # PNG has no reduced decoding: full size
    png = write_image(tmp_path / "big.png", size=(512, 256))
    with Image.open(png) as image:
        assert load_reduced(image, (256, 128)).size == (512, 256)


def test_camera_mpo_photos_are_decoded_at_reduced_size_too(tmp_path):
    # MPO (several JPEG frames, as many cameras and phones save) used to decode at full size
    path = tmp_path / "camera.jpg"
    first, second = Image.new("RGB", (400, 300), (200, 10, 10)), Image.new("RGB", (400, 300))
    first.save(path, "MPO", save_all=True, append_images=[second])
    with Image.open(path) as image:
        assert image.format == "MPO"
    image = load_rgb(path, min_size=64)
    assert image.size == (100, 75)  # 1/4: both sides still >= 64
    assert image.getpixel((50, 37))[0] > 150  # the first frame, the picture


def test_stray_files_in_the_test_folder_are_skipped_with_one_warning(tmp_path, caplog):
    test = tmp_path / "test"
    for name in (
        "10.jpg",
        "9.png",
        "a-b_c.png",
        "05.jpg",
        "9.jpg",
        "11 (1).jpg",
        "x.y.jpg",
        "old/12.jpg",
    ):
        write_image(test / name)
    (test / "README.txt").write_text("where these came from")
    with caplog.at_level("WARNING", logger="lib.common.images"):
        paths, ids = list_test_images(test)
    # ids are text, plain integers first in numeric order: as the competition spells them
    assert ids == ["9", "10", "05", "a-b_c"]
    assert paths == [test / "9.jpg", test / "10.jpg", test / "05.jpg", test / "a-b_c.png"]
    [warning] = [r.getMessage() for r in caplog.records if r.name == "lib.common.images"]
    assert warning == (
        f"{test}: skipped 4 files not named <image_id>.<ext> as the download "
        "names test images: 11 (1).jpg, 9.png, old/12.jpg, x.y.jpg"
    )


def test_decode_problem_says_why_a_file_does_not_decode(tmp_path):
    path = write_image(tmp_path / "1.png", size=(64, 64))
    assert decode_problem(path) is None
    path.write_bytes(path.read_bytes()[:200])
    assert "truncated" in decode_problem(path)
    path.write_bytes(b"")
    assert "cannot identify image file" in decode_problem(path)
