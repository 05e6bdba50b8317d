"""lib.acquire.reconcile: the images on disk brought in line with the lists, on real files.

How the download uses it (moved, set aside, restored, with a real server) is tested in
tests/test_download.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lib.acquire.reconcile import default_removed_dir, image_stem, reconcile, scan_images
from lib.acquire.records import ImageRecord
from lib.acquire.resize import STORED_EXTENSIONS
from lib.common.images import IMAGE_SUFFIXES
from stages.common import IMAGES_DIR, IMAGES_REMOVED_DIR
from tests.conftest import REPO


def folder_of(images: Path):
    return lambda record: (
        images / record.split / str(record.label) if record.label else images / record.split
    )


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("12.jpg", "12"),
        ("0.png", "0"),
        ("7.webp", "7"),
        ("3.tif", "3"),
        ("012.jpg", "012"),
        ("cat.jpg", "cat"),
        ("000bec18-x_1.png", "000bec18-x_1"),
        ("12.JPG", None),
        ("12.txt", None),
        ("12", None),
        (".DS_Store", None),
        ("12.jpg.part", None),
        ("a b.jpg", None),
        ("１２.jpg", None),
        (f"{'a' * 129}.jpg", None),
    ],
)
def test_image_stem_knows_only_the_names_the_download_writes(name: str, stem: str | None):
    assert image_stem(name) == stem


def test_every_stored_extension_is_one_the_later_stages_list():
    assert {f".{extension}" for extension in STORED_EXTENSIONS} <= IMAGE_SUFFIXES


def test_the_stage_folder_is_the_default_beside_the_images():
    assert default_removed_dir(IMAGES_DIR) == IMAGES_REMOVED_DIR.absolute()
    assert default_removed_dir(Path(".")).name == f"{Path.cwd().name}_removed"


def test_the_removed_images_folder_is_git_ignored():
    done = subprocess.run(
        ["git", "check-ignore", "-q", f"{IMAGES_REMOVED_DIR}/train/1/1.jpg"],
        cwd=REPO,
        capture_output=True,
    )
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert done.returncode == 0


def test_scan_finds_images_where_the_download_writes_them(tmp_path: Path):
    for name in (
        "train/01/5.jpg",
        "train/01/6.png",
        "train/02/5.png",
        "validation/3/5.jpg",
        "test/5.jpg",
        "train/x/7.jpg",
        "train/8.jpg",
        "test/1/9.jpg",
        "other/1/2.jpg",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = {
        key: [p.relative_to(tmp_path).as_posix() for p in paths]
        for key, paths in scan_images(tmp_path).items()
    }
    assert found == {
        ("train", "5"): ["train/01/5.jpg", "train/02/5.png"],
        ("train", "6"): ["train/01/6.png"],
        ("validation", "5"): ["validation/3/5.jpg"],
        ("test", "5"): ["test/5.jpg"],
    }


def test_a_run_cut_between_moves_is_finished_by_the_next(tmp_path: Path):
    images, removed = tmp_path / "images", tmp_path / "removed"
    for name in ("train/1/1.jpg", "train/1/2.jpg", "train/2/3.jpg"):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(name.encode())
    # as if the previous run had set image 3 aside and died before image 2
    (removed / "train" / "2").mkdir(parents=True)
    (images / "train/2/3.jpg").rename(removed / "train/2/3.jpg")
    records = {"train": [ImageRecord("train", 1, ("file:x",), 1)]}
    counts = reconcile(records, images, removed, folder_of(images))
    assert (counts.set_aside, counts.moved, counts.restored) == (1, 0, 0)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg")) == [
        "images/train/1/1.jpg",
        "removed/train/1/2.jpg",
        "removed/train/2/3.jpg",
    ]
    assert not (images / "train" / "2").exists()  # emptied label folders go


def test_a_removed_folder_on_another_file_system_is_copied_then_deleted(tmp_path: Path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system (/dev/shm) to move across")
    images = tmp_path / "images"
    (images / "train" / "1").mkdir(parents=True)
    (images / "train" / "1" / "1.jpg").write_bytes(b"image 1")
    removed = shm / f"reconcile-test-{os.getpid()}"
    try:
        emptied = reconcile({"train": []}, images, removed, folder_of(images))
        assert (removed / "train" / "1" / "1.jpg").read_bytes() == b"image 1"
        records = {"train": [ImageRecord("train", 1, ("file:x",), 1)]}
        relisted = reconcile(records, images, removed, folder_of(images))
        assert (images / "train" / "1" / "1.jpg").read_bytes() == b"image 1"
        assert (emptied.set_aside, relisted.restored) == (1, 1)
        assert not list(removed.rglob("*.jpg")) and not list(images.rglob(".tmp*"))
    finally:
        shutil.rmtree(removed, ignore_errors=True)
