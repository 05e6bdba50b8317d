"""lib.fileio: atomic writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import lib.fileio as fileio
from lib.fileio import write_bytes


@pytest.fixture(params=["unnamed file", "named temp file"])
def write_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """write_bytes both ways: the Linux one, and the fallback elsewhere (no O_TMPFILE)."""
    if request.param == "named temp file":
        monkeypatch.setattr(fileio, "_O_TMPFILE", None)
    elif getattr(os, "O_TMPFILE", None) is None:
        pytest.skip("no O_TMPFILE here")
    return request.param


def test_write_bytes_leaves_the_file_alone_in_its_folder(tmp_path: Path, write_mode: str):
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

    monkeypatch.setattr(fileio, "_write_all", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_bytes(tmp_path / "1.jpg", b"new bytes")
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_into_a_missing_folder_fails_like_open(tmp_path: Path, write_mode: str):
    with pytest.raises(FileNotFoundError):
        write_bytes(tmp_path / "nothere" / "1.jpg", b"x")
