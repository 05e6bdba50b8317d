"""data/demo/make_demo.py: the demo and the large competition, built from synthetic IDX files
whose pixels name their source (file and index), so the tests can see where each image came
from."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "data" / "demo" / "make_demo.py"
TRAIN_PER_CLASS, T10K_PER_CLASS = 1560, 100  # the large one takes 1,200 a class, the demo 350
TRAIN_MARK, T10K_MARK = 1, 2


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1))


def fake_split(folder: Path, prefix: str, per_class: int, mark: int) -> None:
    labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    index = np.arange(len(labels))
    images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = mark, index // 256, index % 256
    images[:, 4:24, 4:24] = 128  # something to look at
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def sources(folder: Path) -> set[tuple[int, int]]:
    """(file mark, index) of every image written under folder/images/<split>."""
    found = set()
    for split in ("train", "validation", "test"):
        for png in (folder / "images" / split).glob("*.png"):
            pixels = np.asarray(Image.open(png))
            found.add((int(pixels[0, 0]), int(pixels[0, 1]) * 256 + int(pixels[0, 2])))
    return found


def make(source: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(cwd / "make_demo.py"), "--source", str(source), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("make_demo")
    source, demo = tmp / "idx", tmp / "demo"
    source.mkdir()
    demo.mkdir()
    fake_split(source, "train", TRAIN_PER_CLASS, TRAIN_MARK)
    fake_split(source, "t10k", T10K_PER_CLASS, T10K_MARK)
    (demo / "make_demo.py").write_bytes(SCRIPT.read_bytes())
    for args in ((), ("--large", str(tmp / "large"))):
        done = make(source, *args, cwd=demo)
        assert done.returncode == 0, done.stderr
    return demo, tmp / "large"


def test_large_competition_sizes(built):
    _, large = built
    counts = {
        split: len(json.loads((large / f"{split}.json").read_text())["images"])
        for split in ("train", "validation", "test")
    }
    assert counts == {"train": 9000, "validation": 1000, "test": 2000}
    answers = (large / "test_labels.csv").read_text().splitlines()
    assert answers[0] == "id,label" and len(answers) == 2001
    labels = [a["label_id"] for a in json.loads((large / "train.json").read_text())["annotations"]]
    assert sorted(set(labels)) == list(range(1, 11)) and labels.count(1) == 900


def test_large_competition_is_disjoint_from_the_demo_and_from_the_training_split(built):
    demo, large = built
    demo_sources, large_sources = sources(demo), sources(large)
    assert {mark for mark, _ in large_sources} == {TRAIN_MARK}
    assert {mark for mark, _ in demo_sources} == {TRAIN_MARK, T10K_MARK}
    assert not demo_sources & large_sources
    assert len(large_sources) > 11_900  # all but the few without a good URL or duplicated


def test_missing_source_is_one_line(tmp_path):
    (tmp_path / "make_demo.py").write_bytes(SCRIPT.read_bytes())
    done = make(tmp_path / "nowhere", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"make_demo: no Fashion-MNIST IDX files in {tmp_path / 'nowhere'}: install Debian's "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --source"
    ]


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_demo_rebuilds_byte_for_byte(tmp_path):
    """The committed demo is what the script makes from the real files (a change to the
    script that moves the demo's images shows here, before it changes every figure)."""
    (tmp_path / "make_demo.py").write_bytes(SCRIPT.read_bytes())
    done = make(Path("/usr/share/datasets/fashion-mnist"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    committed = REPO / "data" / "demo"
    for built_file in sorted(tmp_path.rglob("*")):
        if built_file.is_file() and built_file.name != "make_demo.py":
            relative = built_file.relative_to(tmp_path)
            assert built_file.read_bytes() == (committed / relative).read_bytes(), relative
