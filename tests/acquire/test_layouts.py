"""lib.acquire.layouts: Kaggle's images + labels layouts read into the download's records; a
bad folder is one line naming the file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from lib.acquire.layouts import read_competition, read_test_competition
from lib.acquire.records import CompetitionError, ImageRecord
from tests.conftest import write_image
from tests.helpers import call_stage, repo_params, run_stage

HEX = [
    "000bec180eb18c7604dcecc8fe0dba07",
    "00a338a92e4e7bf543340dc849230e75",
    "ff0fa8b5e2e1e2a1b4c8f4b1e1d2c3a4",
    "1a2b3c",
]


def labels_csv_competition(
    root: Path, rows: list[tuple[str, str]], header=("id", "breed"), test=("t1", "t2"), ext=".jpg"
) -> Path:
    for i, (image_id, _) in enumerate(rows):
        write_image(root / "train" / f"{Path(image_id).stem}{ext}", seed=i)
    for i, image_id in enumerate(test):
        write_image(root / "test" / f"{image_id}.png", seed=100 + i)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def test_labels_csv_names_map_to_sorted_ids_and_files_to_urls(tmp_path):
    rows = [
        (HEX[0], "whippet"),
        (HEX[1], "affenpinscher"),
        (HEX[2], "whippet"),
        (HEX[3], "basenji"),
    ]
    competition = read_competition(labels_csv_competition(tmp_path, rows))
    assert competition.format == "labels_csv"
    assert competition.class_names == {1: "affenpinscher", 2: "basenji", 3: "whippet"}
    assert competition.records["train"] == [
        ImageRecord("train", HEX[0], (f"file:train/{HEX[0]}.jpg",), 3),
        ImageRecord("train", HEX[1], (f"file:train/{HEX[1]}.jpg",), 1),
        ImageRecord("train", HEX[3], (f"file:train/{HEX[3]}.jpg",), 2),
        ImageRecord("train", HEX[2], (f"file:train/{HEX[2]}.jpg",), 3),
    ]
    assert competition.test_ids == ["t1", "t2"] and competition.labels == {1, 2, 3}
    assert competition.records["test"][0] == ImageRecord("test", "t1", ("file:test/t1.png",), None)


def test_labels_csv_columns_are_detected_by_content_or_set_by_params(tmp_path):
    # file names in the id column (not its first), a third column: label_column must be named
    rows = [("0", "a.jpg", "x"), ("1", "b.jpg", "y")]
    for i, name in enumerate(("a", "b")):
        write_image(tmp_path / "train" / f"{name}.jpg", seed=i)
    (tmp_path / "labels.csv").write_text(
        "label,image,note\n" + "".join(f"{label},{image},{note}\n" for label, image, note in rows)
    )
    with pytest.raises(
        CompetitionError,
        match=r"labels.csv: columns label, image, note: which "
        r"one holds the labels\? set label_column",
    ):
        read_competition(tmp_path)
    competition = read_competition(tmp_path, label_column="label")
    # integer labels are their own label ids: a label submission writes what the competition
    # calls them
    assert [(r.image_id, r.label) for r in competition.records["train"]] == [("a", 0), ("b", 1)]
    assert competition.class_names is None
    assert read_competition(tmp_path, id_column="image", label_column="note").class_names == {
        1: "x",
        2: "y",
    }
    with pytest.raises(CompetitionError, match=r"id_column 'name' is not in the header"):
        read_competition(tmp_path, id_column="name")
    with pytest.raises(CompetitionError, match="no test split"):
        read_test_competition(tmp_path, label_column="label")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda root: write_image(root / "train" / "a b.jpg"),
            r"train/a b\.jpg: the file name is no image id; expected <id>\.<ext>",
        ),
        (
            lambda root: write_image(root / "test" / "x.y.png"),
            r"test/x\.y\.png: the file name is no",
        ),
        (
            lambda root: write_image(root / "train" / f"{HEX[0]}.png"),
            rf"image id '{HEX[0]}' is taken by .*train/{HEX[0]}\.jpg too",
        ),
        (
            lambda root: write_image(root / "train" / "extra.jpg"),
            r"train/extra\.jpg: no row of .*labels\.csv labels it \(1 train images without one\)",
        ),
        (
            lambda root: (root / "labels.csv").open("a").write("gone,basenji\n"),
            r"labels\.csv: no column names the images of train/ \(columns id, breed\)",
        ),
        (
            lambda root: (root / "labels.csv").open("a").write(f"{HEX[0]},basenji\n"),
            rf"labels\.csv: line 4: id '{HEX[0]}' is labelled twice",
        ),
        (
            lambda root: (root / "labels.csv").open("a").write("1,2,3\n"),
            r"labels\.csv: line 4 has 3 fields; its header has 2",
        ),
    ],
)
def test_a_bad_labels_csv_folder_is_one_line_naming_the_file(tmp_path, change, message):
    root = labels_csv_competition(tmp_path, [(HEX[0], "whippet"), (HEX[1], "basenji")])
    change(root)
    with pytest.raises(CompetitionError, match=message) as error:
        read_competition(root)
    assert "\n" not in str(error.value)


def test_class_folders_give_names_and_quoted_urls(tmp_path):
    for i, (cls, name) in enumerate(
        [("golden retriever", "g1"), ("basenji", "b1"), ("basenji", "b2")]
    ):
        write_image(tmp_path / "train" / cls / f"{name}.jpg", seed=i)
    write_image(tmp_path / "test" / "q.jpg")
    competition = read_competition(tmp_path)
    assert competition.format == "folders"
    assert competition.class_names == {1: "basenji", 2: "golden retriever"}
    assert competition.records["train"][-1] == ImageRecord(
        "train", "g1", ("file:train/golden%20retriever/g1.jpg",), 2
    )
    write_image(tmp_path / "train" / "golden retriever" / "b1.png")
    with pytest.raises(CompetitionError, match=r"image id 'b1' is taken by .*basenji/b1\.jpg"):
        read_competition(tmp_path)


def test_a_folder_in_no_known_layout_says_what_it_expected(tmp_path):
    with pytest.raises(CompetitionError, match=r"no competition found: expected train\.json"):
        read_competition(tmp_path)


def test_folders_layout_through_the_download_and_folds_stages(tmp_path):
    competition = tmp_path / "flowers"
    for cls_index, cls in enumerate(("tulip", "daisy", "rose")):
        for i in range(3):
            write_image(
                competition / "train" / cls / f"{cls}_{i}.jpg",
                size=(24, 20),
                seed=10 * cls_index + i,
            )
    write_image(competition / "test" / "img-01.png", size=(24, 20))
    write_image(competition / "test" / "img-02.png", size=(24, 20), seed=1)
    project = tmp_path / "project"
    project.mkdir()
    # class names as labels: proba (a label submission would write our ids for them)
    params = repo_params() | {
        "competition": str(competition),
        "folds": 3,
        "submission_format": "proba",
    }
    params["download"]["workers"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage("download", project)
    assert done.returncode == 0, done.stderr[-2000:]
    images = project / "data" / "images"
    assert sorted(
        p.relative_to(images).as_posix() for p in images.rglob("*.*") if not p.name.startswith(".")
    ) == [
        "test/img-01.png",
        "test/img-02.png",
        "train/1/daisy_0.jpg",
        "train/1/daisy_1.jpg",
        "train/1/daisy_2.jpg",
        "train/2/rose_0.jpg",
        "train/2/rose_1.jpg",
        "train/2/rose_2.jpg",
        "train/3/tulip_0.jpg",
        "train/3/tulip_1.jpg",
        "train/3/tulip_2.jpg",
    ]
    assert (project / "data/classes.csv").read_text() == "label_id,name\n1,daisy\n2,rose\n3,tulip\n"
    assert (competition / "train/rose/rose_0.jpg").is_file()  # copied, the source kept
    done = call_stage("folds", project)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(project / "data/folds.csv") as f:
        folds = list(csv.DictReader(f))
    assert [row["image_id"] for row in folds][:3] == ["daisy_0", "daisy_1", "daisy_2"]
    assert {row["fold"] for row in folds} == {"0", "1", "2"}


def test_a_label_submission_for_named_labels_writes_the_names_not_our_ids(tmp_path):
    from lib.infer.submission import competition_layout

    root = labels_csv_competition(tmp_path, [(HEX[0], "whippet"), (HEX[1], "basenji")])
    competition = read_test_competition(root)
    label = competition_layout("label", competition, names=None, sample=None)
    assert label.header == ["id", "predicted"] and label.labels == [1, 2]
    assert [label.written(i) for i in label.labels] == ["basenji", "whippet"]
    layout = competition_layout("proba", competition, names=competition.class_names, sample=None)
    assert layout.header == ["id", "basenji", "whippet"] and layout.ids == ["t1", "t2"]
