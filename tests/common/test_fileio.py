"""lib.common.fileio: atomic writes, their modes, and the removal of a killed run's temp files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lib.acquire.store as store
import lib.common.fileio as fileio
from lib.acquire.store import write_bytes
from tests.conftest import REPO


@pytest.fixture
def umask_022():
    """Run with umask 022, as on most systems (tests must not depend on the runner's)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize(
    "write",
    [
        lambda path: fileio.write_text(path, "x"),
        lambda path: fileio.write_json(path, {"a": 1}),
    ],
)
def test_outputs_get_the_mode_the_umask_gives(tmp_path: Path, umask_022, write):
    write(tmp_path / "out")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o644
    with fileio.atomic_path(tmp_path / "via_open.csv") as tmp:
        tmp.write_text("id\n")  # how pandas, numpy and torch write: open() on the temp path
    assert (tmp_path / "via_open.csv").stat().st_mode & 0o777 == 0o644


def dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_remove_stale_temps_deletes_a_dead_writers_files_and_folders(tmp_path: Path):
    pid = dead_pid()
    (tmp_path / f".tmp-{pid}-0a1b2c3d-model.pt").write_bytes(b"half a checkpoint")
    (tmp_path / f".tmp-{pid}-0a1b2c3d-fold0").mkdir()
    (tmp_path / f".tmp-{pid}-0a1b2c3d-fold0" / "oof.npz").write_bytes(b"x")
    (tmp_path / ".tmp-folds.csv.k2j3h4").write_text("mkstemp's name: no pid")
    (tmp_path / "model.pt").write_bytes(b"the real one")
    (tmp_path / "notes.tmp").write_text("not ours")
    assert fileio.remove_stale_temps(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "notes.tmp"]


def test_remove_stale_temps_spares_a_running_writer(tmp_path: Path):
    alive = tmp_path / f".tmp-{os.getppid()}-0a1b2c3d-stats.json"  # our parent: running
    alive.write_text("{")
    own = tmp_path / fileio.temp_name("folds.csv")  # this process, before it writes: stale
    own.write_text("split")
    assert fileio.remove_stale_temps(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [alive.name]
    assert fileio.remove_stale_temps(tmp_path / "missing") == 0


def test_a_killed_atomic_write_is_cleaned_by_the_next_run(tmp_path: Path):
    code = (
        "import os, signal, sys\nfrom lib.common.fileio import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pt")], cwd=REPO)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".tmp-") and left[0].endswith("-model.pt")
    assert fileio.remove_stale_temps(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path):
    import numpy as np
    import torch

    from lib.common.errors import UserError
    from tests.small_disk import small_disk

    noise = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    with small_disk(tmp_path / "disk") as disk:
        (disk / "model.pt").write_bytes(b"the last good checkpoint")
        with pytest.raises(
            fileio.DiskFullError,
            match=r"disk/image\.png: the disk is full "
            r"\(\d+\.\d MB free in .*disk\)",
        ) as error:
            write_bytes(disk / "image.png", noise)
        assert isinstance(error.value, UserError) and "\n" not in str(error.value)
        with (
            pytest.raises(fileio.DiskFullError, match=r"disk/model\.pt: the disk is full"),
            fileio.atomic_path(disk / "model.pt") as tmp,
        ):
            torch.save({"weights": torch.rand(1 << 18)}, tmp)
        with pytest.raises(fileio.DiskFullError, match=r"disk/report\.json: the disk is full"):
            fileio.write_text(disk / "report.json", noise.hex())
        assert sorted(p.name for p in disk.iterdir()) == ["model.pt"]  # no temp file left
        assert (disk / "model.pt").read_bytes() == b"the last good checkpoint"


def test_a_quota_error_is_a_full_disk_and_other_errors_pass_through(tmp_path, monkeypatch):
    def no_space(fd, data):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(store, "_write_all", no_space)
    with pytest.raises(fileio.DiskFullError, match=r"x\.png: the disk is full"):
        write_bytes(tmp_path / "x.png", b"123")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="a bug"), fileio.atomic_path(tmp_path / "y.txt"):
        raise RuntimeError("a bug")
