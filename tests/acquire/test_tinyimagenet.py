"""TinyImageNet's layout: wnids, words, train/<wnid>/images, val annotations, test/images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lib.acquire.layouts import detect_format, read_competition
from lib.acquire.records import CompetitionError
from tests.conftest import write_image

WNIDS = ["n02124075", "n01443537", "n04067472"]  # Egyptian cat, goldfish, reel
WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n02124075": "Egyptian cat",
    "n04067472": "reel",
    "n00001740": "entity",
}

Writer = Callable[[Path, int, int], None]  # (path, class index, image index)


def random_image(path: Path, label: int, index: int) -> None:
    write_image(path, size=(16, 16), seed=label * 100 + index)


def make_tinyimagenet(
    folder: Path,
    *,
    per_class: int = 2,
    val_per_class: int = 1,
    test: int = 2,
    image: Writer = random_image,
) -> dict[str, str]:
    """A TinyImageNet-shaped competition in `folder`; returns val file -> wnid."""
    (folder / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    (folder / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in WORDS.items()))
    answers = {}
    lines = []
    for c, wnid in enumerate(WNIDS):
        for i in range(per_class):
            image(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", c, i)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t8\t8\n")
        for i in range(val_per_class):
            name = f"val_{c * val_per_class + i}.JPEG"
            image(folder / "val" / "images" / name, c, 1000 + i)
            lines.append(f"{name}\t{wnid}\t0\t1\t15\t14\n")
            answers[name] = wnid
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    for i in range(test):
        image(folder / "test" / "images" / f"test_{i}.JPEG", i % len(WNIDS), 2000 + i)
    return answers


def test_tinyimagenet_is_read_with_val_as_the_validation_split(tmp_path):
    answers = make_tinyimagenet(tmp_path)
    assert detect_format(tmp_path) == "tinyimagenet"
    competition = read_competition(tmp_path)
    # wnids are names: ids 1..N in sorted order; the words name them in the reports
    assert competition.class_names == {1: "n01443537", 2: "n02124075", 3: "n04067472"}
    assert competition.display_names == {
        1: "goldfish, Carassius auratus (n01443537)",
        2: "Egyptian cat (n02124075)",
        3: "reel (n04067472)",
    }
    train = competition.records["train"]
    assert len(train) == 6 and {r.label for r in train} == {1, 2, 3}
    assert [r.urls[0] for r in train if r.image_id == "n01443537_0"] == [
        "file:train/n01443537/images/n01443537_0.JPEG"
    ]
    val = {r.image_id: competition.class_names[r.label] for r in competition.records["validation"]}
    assert val == {Path(name).stem: wnid for name, wnid in answers.items()}
    assert competition.test_ids == ["test_0", "test_1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda root: (root / "val/val_annotations.txt").write_text(
                "val_0.JPEG\tn09999999\t0\t0\t1\t1\n"
            ),
            r"line 1: wnid 'n09999999' is not in .*wnids",
        ),
        (
            lambda root: (root / "val/val_annotations.txt").write_text(
                "val_0.JPEG\tn02124075\t0\t0\t1\t1\n"
            ),
            r"val_1.JPEG: no line of .* labels it \(2 val",
        ),
        (
            lambda root: (root / "train/n09999999/images").mkdir(parents=True),
            r"n09999999 is not in .*wnids.txt",
        ),
        (
            lambda root: (root / "val/val_annotations.txt").write_text("val_0.JPEG\n"),
            "expected tab-separated file, wnid",
        ),
    ],
)
def test_a_broken_tinyimagenet_names_the_file_and_line(tmp_path, change, message):
    make_tinyimagenet(tmp_path)
    change(tmp_path)
    with pytest.raises(CompetitionError, match=message):
        read_competition(tmp_path, fmt="tinyimagenet")


def test_missing_words_show_classes_by_wnid(tmp_path):
    make_tinyimagenet(tmp_path, test=0)
    (tmp_path / "words.txt").unlink()
    competition = read_competition(tmp_path)
    assert competition.display_names == competition.class_names
    assert "test" not in competition.records
