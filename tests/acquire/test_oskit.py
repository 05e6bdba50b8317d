"""lib.acquire.oskit: each trick does what its caller relies on, and gives way where refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.acquire import oskit
from tests.conftest import REPO


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_batch_scheduling_switches_for_the_block_and_back():
    before = os.sched_getscheduler(0)
    with oskit.batch_scheduling():
        assert os.sched_getscheduler(0) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == before


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_a_refused_scheduling_policy_is_no_error(monkeypatch: pytest.MonkeyPatch):
    def refuse(*args: object) -> None:
        raise PermissionError("seccomp")

    before = os.sched_getscheduler(0)
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with oskit.batch_scheduling():  # the caller runs on without it
        assert os.sched_getscheduler(0) == before
    assert os.sched_getscheduler(0) == before


_FAULTS_SCRIPT = """
import resource
from lib.acquire.oskit import keep_freed_memory

kept = keep_freed_memory()


def one_image():
    # the buffers decoding and shrinking one photo holds at once: several of about 1 MiB
    buffers = [bytearray(1 << 20) for _ in range(6)]
    del buffers


for _ in range(3):
    one_image()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    one_image()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def test_keep_freed_memory_reuses_freed_image_buffers():
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True, text=True, check=True, cwd=REPO
    )
    kept, per_image = done.stdout.split()
    if kept != "True":
        pytest.skip("not glibc")
    # 6 MiB freed and allocated again: 1,536 pages, unless the heap kept them
    assert float(per_image) <= 16, f"{per_image} page faults per image"


def test_an_unnamed_file_has_no_name_until_linked(tmp_path: Path):
    fd = oskit.open_unnamed_file(tmp_path)
    if fd is None:
        pytest.skip("no unnamed files here")
    try:
        os.write(fd, b"bytes")
        assert list(tmp_path.iterdir()) == []
        oskit.link_unnamed_file(fd, tmp_path / "1.jpg")
        with pytest.raises(FileExistsError):
            oskit.link_unnamed_file(fd, tmp_path / "1.jpg")
    finally:
        os.close(fd)
    assert [(p.name, p.read_bytes()) for p in tmp_path.iterdir()] == [("1.jpg", b"bytes")]


def test_an_unnamed_file_in_a_missing_folder_fails_like_open(tmp_path: Path):
    if oskit._O_TMPFILE is None:
        pytest.skip("no unnamed files here")
    with pytest.raises(FileNotFoundError):
        oskit.open_unnamed_file(tmp_path / "nothere")


def test_stderr_muted_silences_descriptor_2_and_gives_it_back(capfd: pytest.CaptureFixture):
    with oskit.stderr_muted():
        os.write(2, b"from a C library\n")
    os.write(2, b"still there\n")
    assert capfd.readouterr().err == "still there\n"
