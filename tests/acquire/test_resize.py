"""lib.acquire.resize: validating bodies as images and shrinking them, on real encoded images."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from lib.acquire.resize import (
    ImageLimits,
    check_header,
    decode_jpeg_reduced,
    encode_jpeg,
    fit_size,
    jpeg_reduction,
    prepare_image,
    resize_pixels,
)
from lib.common.images import load_reduced
from tests.conftest import write_image


def encode(size: tuple[int, int], fmt: str = "JPEG", mode: str = "RGB", **save: object) -> bytes:
    """A photo-like image (gradient plus noise), so resizing and JPEG behave as on photos."""
    width, height = size
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "fmt", "shrunk"),
    [
        ((640, 480), "JPEG", (64, 48)),
        ((300, 900), "JPEG", (21, 64)),
        ((200, 100), "PNG", (64, 32)),
        ((65, 65), "WEBP", (64, 64)),
    ],
)
def test_longer_side_is_shrunk_to_max_side_with_the_aspect_kept(size, fmt, shrunk):
    prepared = prepare_image(encode(size, fmt), ImageLimits(max_side=64))
    assert (prepared.extension, prepared.reason, prepared.resized) == ("jpg", None, True)
    image = decoded(prepared.data)
    assert image.format == "JPEG" and image.size == shrunk
    assert shrunk == fit_size(size, 64)


@pytest.mark.parametrize(
    ("size", "fmt", "extension"),
    [((64, 40), "JPEG", "jpg"), ((64, 64), "PNG", "png"), ((10, 64), "GIF", "gif")],
)
def test_images_within_the_limit_are_kept_byte_for_byte(size, fmt, extension):
    body = encode(size, fmt)
    prepared = prepare_image(body, ImageLimits(max_side=64))
    assert prepared.data is body and prepared.extension == extension and not prepared.resized


def test_no_max_side_keeps_every_original():
    body = encode((2000, 1500))
    prepared = prepare_image(body, ImageLimits(max_side=None))
    assert prepared.data is body and not prepared.resized


@pytest.mark.parametrize("progressive", [False, True])
def test_a_truncated_jpeg_is_refused_even_when_decoded_at_reduced_size(progressive):
    body = encode((1024, 768), quality=95, progressive=progressive)
    prepared = prepare_image(body[: len(body) // 2], ImageLimits(max_side=64))
    assert prepared.reason == "truncated_image" and prepared.data is None


@pytest.mark.parametrize("width", [380, 1000])  # what JPEG draft leaves (<2x); full-size PNGs
def test_resizing_does_not_alias_fine_detail(width):
    # one-pixel stripes have no representable frequency at the new size: a correct downscale
    # is flat grey; plain bilinear sampling keeps (aliases) stripes of full contrast
    stripes = np.tile(np.array([0, 255], np.uint8), width // 2)[None, :].repeat(100, axis=0)
    size = (200, 50)
    ours = resize_pixels(stripes, size).astype(np.float64)
    naive = cv2.resize(stripes, size, interpolation=cv2.INTER_LINEAR).astype(np.float64)
    assert ours.std() < 20 and abs(ours.mean() - 127.5) < 3
    assert naive.std() > 3 * ours.std()  # so the prefilter is what keeps ours flat


def test_a_shrunk_photo_matches_a_high_quality_resize_of_the_full_image():
    photo = load_sample_image("china.jpg")  # a real 640 x 427 photo
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=95)
    prepared = prepare_image(buffer.getvalue(), ImageLimits(max_side=256, quality=95))
    ours = np.asarray(decoded(prepared.data), np.float64)
    reference = np.asarray(
        Image.fromarray(photo).resize((ours.shape[1], ours.shape[0]), Image.Resampling.LANCZOS),
        np.float64,
    )
    psnr = 10 * np.log10(255**2 / np.mean((ours - reference) ** 2))
    assert psnr > 28


def test_quality_sets_the_jpeg_quality_of_shrunk_images():
    body = encode((800, 600))
    low = prepare_image(body, ImageLimits(max_side=256, quality=30)).data
    high = prepare_image(body, ImageLimits(max_side=256, quality=95)).data
    assert len(low) < len(high) / 2


@pytest.mark.parametrize(
    ("mode", "stored"), [("RGBA", "RGB"), ("P", "RGB"), ("LA", "RGB"), ("L", "L"), ("CMYK", "RGB")]
)
def test_shrunk_images_are_stored_in_a_mode_jpeg_holds(mode, stored):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    prepared = prepare_image(encode((100, 80), fmt, mode), ImageLimits(max_side=50))
    image = decoded(prepared.data)
    assert (image.mode, image.size) == (stored, (50, 40))


def test_16_bit_images_are_scaled_to_8_bits_when_shrunk():
    pixels = np.full((40, 80), 65535, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    image = decoded(prepare_image(buffer.getvalue(), ImageLimits(max_side=20)).data)
    assert image.mode == "L" and np.asarray(image).min() >= 250  # white stays white


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not_an_image"),
        (b"<html><body>gone</body></html>", "not_an_image"),
        (encode((1, 1), "GIF"), "placeholder"),
        (encode((200, 4), "PNG"), "placeholder"),
        (encode((120, 120), "PNG"), "decompression_bomb"),
    ],
)
def test_refused_bodies(body: bytes, reason: str):
    limits = ImageLimits(min_side=8, max_pixels=10_000, max_side=64)
    assert prepare_image(body, limits).reason == reason


def check_image(body: bytes, *, min_side: int, max_pixels: int) -> tuple[str | None, str | None]:
    prepared = prepare_image(body, ImageLimits(min_side=min_side, max_pixels=max_pixels))
    return prepared.extension, prepared.reason


def test_check_image_formats():
    limits = dict(min_side=8, max_pixels=10_000)
    assert check_image(encode((32, 32)), **limits) == ("jpg", None)
    assert check_image(encode((32, 32), "PNG"), **limits) == ("png", None)
    assert check_image(encode((16, 16), "GIF"), **limits) == ("gif", None)
    assert check_image(encode((16, 16), "WEBP"), **limits) == ("webp", None)
    assert check_image(encode((16, 16), "BMP"), **limits) == ("bmp", None)
    assert check_image(encode((16, 16), "TIFF"), **limits) == ("tif", None)
    assert check_image(b"", **limits) == (None, "not_an_image")


def test_check_header_reads_the_size_without_decoding(tmp_path):
    path = tmp_path / "x.jpg"
    body = encode((300, 200))
    path.write_bytes(body)
    assert check_header(str(path), ImageLimits()) == ((300, 200), None, True)
    path.write_bytes(body[:2000])  # header only: enough for the size, not whole
    assert check_header(str(path), ImageLimits()) == ((300, 200), None, False)
    path.write_bytes(b"")
    assert check_header(str(path), ImageLimits()) == (None, "not_an_image", False)
    path.write_bytes(encode((4, 4)))
    assert check_header(str(path), ImageLimits()) == (None, "placeholder", False)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("cut", [1, 2, 7, 100, "half"])
def test_a_file_cut_short_does_not_end_whole(tmp_path, fmt, cut):
    path = tmp_path / "x"
    body = encode((120, 80), fmt)
    path.write_bytes(body)
    assert check_header(str(path), ImageLimits())[2] is True
    path.write_bytes(body[: len(body) // 2] if cut == "half" else body[:-cut])
    assert check_header(str(path), ImageLimits())[2] is False


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "PPM"])
def test_formats_without_a_cheap_end_sign_are_left_to_the_decoder(tmp_path, fmt):
    path = tmp_path / "x"
    path.write_bytes(encode((20, 20), fmt))
    assert check_header(str(path), ImageLimits()) == ((20, 20), None, False)


def test_shrunk_and_camera_jpegs_end_whole(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(prepare_image(encode((300, 200)), ImageLimits(max_side=64)).data)
    assert check_header(str(path), ImageLimits()) == ((64, 43), None, True)
    camera = Image.fromarray(np.zeros((40, 40, 3), np.uint8))
    camera.save(path, "MPO", save_all=True, append_images=[camera])  # two JPEG frames
    assert check_header(str(path), ImageLimits())[2] is True


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_encode_jpeg_writes_what_pillow_writes(mode):
    # OpenCV's encoder stands in for Pillow's save only because the bytes are the same
    pixels = np.asarray(Image.open(io.BytesIO(encode((300, 200), mode=mode))))
    ours = encode_jpeg(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if mode == "RGB" else pixels, 85)
    pillow = io.BytesIO()
    Image.fromarray(pixels).save(pillow, "JPEG", quality=85)
    assert ours == pillow.getvalue()
    with Image.open(io.BytesIO(ours)) as image:
        assert image.format == "JPEG" and image.mode == mode and image.size == (300, 200)


def solid_jpeg(size: tuple[int, int], color: tuple[int, int, int], **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def test_shrunk_jpegs_keep_their_colours():
    # OpenCV decodes and encodes in BGR order, PIL in RGB: a swap would turn red into blue
    for color in [(220, 30, 30), (30, 220, 30), (30, 30, 220)]:
        prepared = prepare_image(solid_jpeg((800, 600), color), ImageLimits(max_side=64))
        pixels = np.asarray(decoded(prepared.data), np.float64)
        assert np.abs(pixels.mean(axis=(0, 1)) - color).max() < 4


def test_opencv_decodes_a_jpeg_as_pil_does():
    photo = load_sample_image("flower.jpg")  # a real 640 x 427 photo
    for mode in ("RGB", "L"):
        buffer = io.BytesIO()
        Image.fromarray(photo).convert(mode).save(buffer, "JPEG", quality=90)
        body = buffer.getvalue()
        with Image.open(io.BytesIO(body)) as image:
            ours = decode_jpeg_reduced(image, body, (160, 100)).astype(np.float64)  # 1/4
        with Image.open(io.BytesIO(body)) as image:
            image.draft(mode, (160, 100))
            pil = np.asarray(image, np.float64)
        if mode == "RGB":
            pil = pil[..., ::-1]  # BGR, as OpenCV gives it
        assert ours.shape == pil.shape == ((107, 160, 3) if mode == "RGB" else (107, 160))
        assert np.mean((ours - pil) ** 2) < 255**2 / 10**3.5  # PSNR above 35 dB


def test_exif_orientation_is_not_applied_to_shrunk_jpegs():
    # stored 800 x 600, left half dark; orientation 6 asks viewers to turn it upright
    pixels = np.full((600, 800, 3), 230, np.uint8)
    pixels[:, :400] = 20
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif)
    shrunk = np.asarray(decoded(prepare_image(buffer.getvalue(), ImageLimits(max_side=80)).data))
    assert shrunk.shape == (60, 80, 3)
    assert shrunk[:, :30].mean() < 60 and shrunk[:, 50:].mean() > 190


def test_an_mpo_is_shrunk_from_its_first_frame():
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (800, 600), (200, 40, 40)), Image.new("RGB", (800, 600))
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    prepared = prepare_image(buffer.getvalue(), ImageLimits(max_side=64))
    assert prepared.extension == "jpg"
    assert np.asarray(decoded(prepared.data), np.float64)[..., 0].mean() > 180


def test_libjpeg_warnings_do_not_reach_the_terminal(capfd):
    # a few bytes of garbage before the end: libjpeg recovers (the image is accepted, as PIL
    # accepts it) but warns on file descriptor 2, which would break the progress bar
    body = bytearray(encode((800, 600), quality=95))
    body[-200:-2] = bytes(range(198))
    assert prepare_image(bytes(body), ImageLimits(max_side=64)).reason is None
    os.write(2, b"still there\n")  # and the descriptor is back afterwards
    assert capfd.readouterr().err == "still there\n"


@pytest.mark.parametrize(
    "size", [(2048, 1024), (1000, 500), (1023, 511), (300, 900), (256, 128), (257, 4000)]
)
def test_jpeg_reduction_is_the_scale_pil_draft_picks(tmp_path, size):
    path = write_image(tmp_path / "photo.jpg", size=size)
    with Image.open(path) as image:
        reduced = load_reduced(image, (256, 128)).size
    divisor = jpeg_reduction(size, (256, 128))
    assert reduced == (-(-size[0] // divisor), -(-size[1] // divisor))


def test_a_jpeg_opencv_will_not_take_is_shrunk_by_pil(monkeypatch):
    def refuse(*_):
        raise cv2.error("above OpenCV's limits")

    monkeypatch.setattr(cv2, "imdecode", refuse)
    prepared = prepare_image(encode((640, 480)), ImageLimits(max_side=64))
    assert prepared.reason is None and decoded(prepared.data).size == (64, 48)


def test_shrinking_works_with_no_stderr_at_all():
    script = (
        "import os\n"
        "from lib.acquire.resize import ImageLimits, prepare_image\n"
        "from tests.acquire.test_resize import encode\n"
        "body, limits = encode((640, 480)), ImageLimits(max_side=64)\n"
        "prepare_image(body, limits)\n"  # first: /dev/null opened, not as descriptor 2
        "os.close(2)\n"
        "print(prepare_image(body, limits).resized)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.split() == ["True"]
