"""Shared fixtures: tiny real images written under tmp_path; a recorder of the files a call
writes (for the property-based tests: readers write nothing outside their folder); the params
the tests run on; the shrunk demo project reproduced once, for the end-to-end tests to copy.

Tests never read the checkout's params.yaml (the user's to edit: another competition, another
lr): they take tests/params.yaml, a copy of the shipped defaults, whose keys a test holds equal
to params.yaml's (tests/common/test_params.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parent.parent
PARAMS_FIXTURE = Path(__file__).resolve().parent / "params.yaml"  # the defaults tests run on


def write_image(
    path: Path,
    *,
    size: tuple[int, int] = (16, 12),
    mode: str = "RGB",
    seed: int = 0,
    fmt: str | None = None,
) -> Path:
    """A random image of `mode` at `path` (format from the suffix unless `fmt` is given)."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """An ImageFolder tree like the download stage writes: 3 labels x 6 train images,
    2 labels x 2 validation images, 4 test images."""
    root = tmp_path / "images"
    seed = 0
    for label in (1, 2, 3):
        for image_id in range(6):
            seed += 1
            write_image(
                root / "train" / f"{label:02d}" / f"{label * 100 + image_id}.png", seed=seed
            )
    for label in (1, 2):
        for image_id in range(2):
            seed += 1
            write_image(
                root / "validation" / f"{label:02d}" / f"{label * 10 + image_id}.jpg", seed=seed
            )
    for image_id in range(4):
        seed += 1
        write_image(root / "test" / f"{image_id + 1}.png", seed=seed)
    return root


# Audit events that change the file system (https://docs.python.org/3/library/audit_events.html)
_CHANGES = {
    "os.rename",
    "os.replace",
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.utime",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_recording: list[list[str]] = []  # the lists recording_writes() is filling; empty: not recording


def _audit(event: str, args: tuple) -> None:
    if not _recording:
        return
    if event == "open":
        path, mode, flags = args
        writes = (
            any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
        )
        targets = [path] if writes else []
    elif event in _CHANGES:
        targets = [a for a in args[:2] if isinstance(a, str | bytes | os.PathLike)]
    else:
        return
    for target in targets:
        if isinstance(target, str | bytes | os.PathLike):  # not an open file descriptor
            _recording[-1].append(os.path.abspath(os.fsdecode(target)))


sys.addaudithook(_audit)  # hooks cannot be removed: it records only inside recording_writes


@contextmanager
def recording_writes() -> Iterator[list[str]]:
    """The absolute paths of every file this process creates, writes, renames or deletes inside
    the block (through Python's open/os/shutil, which every reader here uses)."""
    _recording.append([])
    try:
        yield _recording[-1]
    finally:
        _recording.pop()


def assert_written_only_inside(folder: Path, writes: list[str]) -> None:
    outside = [w for w in writes if not Path(w).is_relative_to(folder)]
    assert not outside, f"written outside {folder}: {outside[:3]}"


def default_params() -> dict:
    """The shipped defaults, as a fresh nested dict (tests/params.yaml, never the checkout's
    params.yaml)."""
    from lib.common.params import read_params_file

    return read_params_file(PARAMS_FIXTURE)


def write_params(folder: Path, **overrides) -> Path:
    """folder/params.yaml: the defaults with top-level `overrides`."""
    import yaml

    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(default_params() | overrides, sort_keys=False))
    return path


def train_config(**overrides):
    """A TrainConfig with the default params' values and `overrides`."""
    from lib.train.loop import TrainConfig

    return TrainConfig.from_params(default_params(), **overrides)


def download_settings(**overrides):
    """DownloadSettings with the default params' values and `overrides`."""
    from lib.acquire.download import DownloadSettings

    return DownloadSettings.from_params(default_params(), **overrides)


@dataclass(frozen=True)
class Reproduced:
    path: Path  # the project: its git repo, DVC cache and outs
    output: str  # what its `dvc repro` printed


@pytest.fixture(scope="session")
def reproduced_demo(tmp_path_factory) -> Reproduced:
    """The shrunk demo project (tests.helpers.make_project) after one `dvc repro`, committed as
    "baseline". Shared by the end-to-end tests that start from the same trained demo: each
    works on its own copy (tests.helpers.copy_project), never on this one."""
    from tests.helpers import commit, make_project, run

    project = make_project(tmp_path_factory.mktemp("reproduced_demo"))
    output = run(["dvc", "repro"], project)
    commit(project, "baseline")
    return Reproduced(project, output)
