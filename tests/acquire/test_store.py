"""lib.acquire.store: one body validated, shrunk and written (atomically, ``write_bytes``); one
image on disk checked."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

import lib.acquire.store as store_module
from lib.acquire.oskit import open_unnamed_file
from lib.acquire.resize import ImageLimits
from lib.acquire.store import (
    EXISTING_BAD,
    EXISTING_OK,
    EXISTING_RESIZED,
    check_existing,
    store,
    store_decoded,
    write_bytes,
)


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_valid_body_is_written_byte_for_byte_and_a_placeholder_is_refused(tmp_path: Path):
    body = png((32, 16))
    assert store(body, str(tmp_path), "7", ImageLimits(min_side=8)) == (None, len(body), False)
    assert (tmp_path / "7.png").read_bytes() == body
    assert store(png((1, 1)), str(tmp_path), "8", ImageLimits(min_side=8)) == (
        "placeholder",
        0,
        False,
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["7.png"]


def test_a_larger_body_is_shrunk_to_max_side_as_a_jpeg(tmp_path: Path):
    reason, written, resized = store(png((64, 32)), str(tmp_path), "1", ImageLimits(max_side=16))
    assert (reason, resized) == (None, True)
    with Image.open(tmp_path / "1.jpg") as image:
        assert image.size == (16, 8)
    assert (tmp_path / "1.jpg").stat().st_size == written


def test_store_decoded_gives_the_digest_of_the_bytes_written(tmp_path: Path):
    reason, written, resized, digest = store_decoded(
        png((64, 32)), str(tmp_path), "1", ImageLimits(max_side=16)
    )
    assert (reason, resized) == (None, True)
    assert digest == hashlib.blake2b((tmp_path / "1.jpg").read_bytes(), digest_size=16).digest()
    assert store_decoded(png((1, 1)), str(tmp_path), "2", ImageLimits(min_side=8)) == (
        "placeholder",
        0,
        False,
        b"",
    )


def test_a_missing_folder_is_an_error_not_a_refused_image(tmp_path: Path):
    with pytest.raises(FileNotFoundError):  # a bug to report, not a bad image to count
        store(png((16, 16)), str(tmp_path / "nowhere"), "1", ImageLimits())


def test_images_on_disk_are_kept_shrunk_in_place_or_deleted(tmp_path: Path):
    (tmp_path / "ok.png").write_bytes(png((16, 16)))
    (tmp_path / "big.png").write_bytes(png((64, 64)))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    limits = ImageLimits(min_side=8, max_side=32)
    assert [
        check_existing(str(tmp_path / name), limits) for name in ("ok.png", "big.png", "broken.png")
    ] == [EXISTING_OK, EXISTING_RESIZED, EXISTING_BAD]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["big.jpg", "ok.png"]


@pytest.fixture(params=["unnamed file", "named temp file"])
def write_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """write_bytes both ways: the Linux one, and the fallback elsewhere (no O_TMPFILE)."""
    if request.param == "named temp file":
        monkeypatch.setattr(store_module, "open_unnamed_file", lambda folder: None)
    elif (fd := open_unnamed_file(Path(tempfile.gettempdir()))) is None:
        pytest.skip("no unnamed files here")
    else:
        os.close(fd)
    return request.param


def test_write_bytes_leaves_the_file_alone_with_the_umask_mode(tmp_path: Path, write_mode: str):
    umask = os.umask(0o022)
    os.umask(umask)
    write_bytes(tmp_path / "1.jpg", b"new bytes")
    assert [p.name for p in tmp_path.iterdir()] == ["1.jpg"]
    assert (tmp_path / "1.jpg").read_bytes() == b"new bytes"
    assert (tmp_path / "1.jpg").stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_bytes_replaces_a_file_already_there(tmp_path: Path, write_mode: str):
    (tmp_path / "1.jpg").write_bytes(b"old")
    write_bytes(tmp_path / "1.jpg", b"new bytes")
    assert [p.name for p in tmp_path.iterdir()] == ["1.jpg"]
    assert (tmp_path / "1.jpg").read_bytes() == b"new bytes"


def test_a_failed_write_bytes_leaves_nothing(
    tmp_path: Path, write_mode: str, monkeypatch: pytest.MonkeyPatch
):
    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write_all", disk_full)
    with pytest.raises(OSError, match=r"1\.jpg: the disk is full"):  # a DiskFullError
        write_bytes(tmp_path / "1.jpg", b"new bytes")
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_into_a_missing_folder_fails_like_open(tmp_path: Path, write_mode: str):
    with pytest.raises(FileNotFoundError):
        write_bytes(tmp_path / "nothere" / "1.jpg", b"x")
