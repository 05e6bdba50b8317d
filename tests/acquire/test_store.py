"""lib.acquire.store: one body validated, shrunk and written; one image on disk checked."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from lib.acquire.resize import ImageLimits
from lib.acquire.store import EXISTING_BAD, EXISTING_OK, EXISTING_RESIZED, check_existing, store


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_valid_body_is_written_byte_for_byte_and_a_placeholder_is_refused(tmp_path: Path):
    body = png((32, 16))
    assert store(body, str(tmp_path), "7", ImageLimits(min_side=8)) == (None, len(body), False)
    assert (tmp_path / "7.png").read_bytes() == body
    assert store(png((1, 1)), str(tmp_path), "8", ImageLimits(min_side=8)) == (
        "placeholder", 0, False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["7.png"]


def test_a_larger_body_is_shrunk_to_max_side_as_a_jpeg(tmp_path: Path):
    reason, written, resized = store(png((64, 32)), str(tmp_path), "1", ImageLimits(max_side=16))
    assert (reason, resized) == (None, True)
    with Image.open(tmp_path / "1.jpg") as image:
        assert image.size == (16, 8)
    assert (tmp_path / "1.jpg").stat().st_size == written


def test_a_missing_folder_is_an_error_not_a_refused_image(tmp_path: Path):
    with pytest.raises(FileNotFoundError):  # a bug to report, not a bad image to count
        store(png((16, 16)), str(tmp_path / "nowhere"), "1", ImageLimits())


def test_images_on_disk_are_kept_shrunk_in_place_or_deleted(tmp_path: Path):
    (tmp_path / "ok.png").write_bytes(png((16, 16)))
    (tmp_path / "big.png").write_bytes(png((64, 64)))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    limits = ImageLimits(min_side=8, max_side=32)
    assert [check_existing(str(tmp_path / name), limits)
            for name in ("ok.png", "big.png", "broken.png")] == [
        EXISTING_OK, EXISTING_RESIZED, EXISTING_BAD]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["big.jpg", "ok.png"]
