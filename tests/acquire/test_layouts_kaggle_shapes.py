"""lib.acquire.layouts and the download stage on folders shaped as real Kaggle zips unpack:
test images one folder down, class images in sub-folders, label cells with stray spaces, and
a re-run whose lists lost a class or most of a split (never an exit-0 run with a wrong set)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import yaml

from lib.acquire.layouts import read_competition
from lib.acquire.reconcile import ShrunkError
from lib.acquire.records import CompetitionError
from lib.common.errors import UserError
from tests.conftest import write_image
from tests.test_stages import repo_params

LAYOUTS = ("labels_csv", "folders")


def make_competition(
    root: Path,
    layout: str,
    *,
    classes=("cat", "dog", "fox"),
    per_class=3,
    test=("t1", "t2", "t3", "t4"),
    test_dir="test",
    class_sub="",
    label_of=lambda cls: cls,
) -> Path:
    """A small competition of real JPEGs in ``layout``; ``class_sub`` puts every class's
    images one folder down (folders layout: ``train/<class>/<class_sub>/``)."""
    rows = []
    for c, cls in enumerate(classes):
        for i in range(per_class):
            image_id = f"{cls}{i}"
            if layout == "folders":
                path = root / "train" / cls / class_sub / f"{image_id}.jpg"
            else:
                path = root / "train" / f"{image_id}.jpg"
            write_image(path, size=(20, 18), seed=10 * c + i)
            rows.append((image_id, label_of(cls)))
    for i, image_id in enumerate(test):
        write_image(root / test_dir / f"{image_id}.png", size=(20, 18), seed=100 + i)
    if layout == "labels_csv":
        with open(root / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("id", "breed"), *rows])
    return root


@pytest.mark.parametrize("layout", LAYOUTS)
def test_test_images_one_folder_down_are_read(tmp_path, layout):
    root = make_competition(tmp_path, layout, test_dir="test/test")
    competition = read_competition(root)
    assert competition.test_ids == ["t1", "t2", "t3", "t4"]
    assert competition.records["test"][0].urls == ("file:test/test/t1.png",)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_test_images_both_in_the_folder_and_below_it_are_refused_naming_the_subfolder(
    tmp_path, layout
):
    root = make_competition(tmp_path, layout)
    write_image(root / "test" / "extra" / "t9.png")
    with pytest.raises(
        CompetitionError,
        match=r"test/extra: 1 images in a sub-folder of .*test,"
        r" which holds 4 images itself: which are meant",
    ):
        read_competition(root)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_empty_test_folder_is_refused(tmp_path, layout):
    root = make_competition(tmp_path, layout, test=())
    (root / "test").mkdir()
    (root / "test" / "readme.txt").write_text("images come later")
    with pytest.raises(CompetitionError, match=r"test: no images \(expected <id>\.<ext> files"):
        read_competition(root)


def test_an_empty_json_test_list_is_refused(tmp_path):
    (tmp_path / "train.json").write_text(
        json.dumps(
            {
                "images": [
                    {"url": "file:1.png", "image_id": 1},
                    {"url": "file:2.png", "image_id": 2},
                ],
                "annotations": [{"image_id": 1, "label_id": 1}, {"image_id": 2, "label_id": 2}],
            }
        )
    )
    (tmp_path / "test.json").write_text('{"images": []}')
    with pytest.raises(CompetitionError, match=r"test\.json: 'images' is empty"):
        read_competition(tmp_path)


def test_class_images_in_sub_folders_are_read_as_that_class(tmp_path):
    root = make_competition(tmp_path, "folders", class_sub="batch1")
    write_image(root / "train" / "cat" / "batch2" / "cat9.jpg", size=(20, 18), seed=99)
    competition = read_competition(root)
    assert competition.class_names == {1: "cat", 2: "dog", 3: "fox"}
    cats = [r for r in competition.records["train"] if r.label == 1]
    assert [r.image_id for r in cats] == ["cat0", "cat1", "cat2", "cat9"]
    assert cats[-1].urls == ("file:train/cat/batch2/cat9.jpg",)


def test_train_folder_one_level_down_is_read_and_a_single_class_refused(tmp_path):
    root = make_competition(tmp_path / "a", "folders")
    (root / "train").rename(root / "train_")
    (root / "train").mkdir()
    (root / "train_").rename(root / "train" / "train")
    assert read_competition(root).class_names == {1: "cat", 2: "dog", 3: "fox"}
    root = make_competition(tmp_path / "b", "folders", classes=("cat",))
    with pytest.raises(CompetitionError, match=r"train: images of one class only \('cat'\)"):
        read_competition(root)


def test_an_empty_class_folder_is_refused_naming_it(tmp_path):
    root = make_competition(tmp_path, "folders")
    (root / "train" / "emu").mkdir()
    with pytest.raises(CompetitionError, match=r"train/emu: class folder without images"):
        read_competition(root)


def test_label_and_id_cells_with_stray_spaces_are_stripped_with_a_warning(tmp_path, caplog):
    root = make_competition(
        tmp_path, "labels_csv", label_of=lambda cls: f" {cls} " if cls == "dog" else cls
    )
    text = (root / "labels.csv").read_text().replace("cat0,", "cat0 ,")
    (root / "labels.csv").write_text(text)
    with caplog.at_level(logging.WARNING, logger="lib.acquire.layouts"):
        competition = read_competition(root)
    assert competition.class_names == {1: "cat", 2: "dog", 3: "fox"}
    assert len(competition.records["train"]) == 9
    assert (
        "labels.csv: 4 cells had spaces around them, stripped (first: line 2, 'cat0 ')"
        in caplog.text
    )


# --- the download stage, in process, on two runs ----------------------------------------------


def download_stage(project: Path, competition: Path, monkeypatch) -> None:
    from stages import download

    params = repo_params() | {"competition": str(competition)}
    params["download"]["workers"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    download.main()


def stored(project: Path, split: str) -> list[str]:
    return sorted(
        p.relative_to(project / "data/images" / split).as_posix()
        for p in (project / "data/images" / split).rglob("*.*")
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_class_that_loses_its_images_between_runs_stops_the_download(
    tmp_path, monkeypatch, layout
):
    competition, project = make_competition(tmp_path / "c", layout), tmp_path / "p"
    project.mkdir()
    download_stage(project, competition, monkeypatch)
    assert len(stored(project, "train")) == 9
    for path in (competition / "train").rglob("fox*.jpg"):
        path.unlink()
    if layout == "labels_csv":
        rows = (competition / "labels.csv").read_text().splitlines()
        (competition / "labels.csv").write_text("\n".join(r for r in rows if "fox" not in r))
    else:
        (competition / "train" / "fox").rmdir()
    with pytest.raises(
        ShrunkError,
        match=r"data/images/train holds images of 3 classes but the "
        r"competition now lists 2 \(label folders no longer "
        r"listed: 3\).*move data/images/train aside",
    ) as error:
        download_stage(project, competition, monkeypatch)
    assert isinstance(error.value, UserError) and "\n" not in str(error.value)
    assert len(stored(project, "train")) == 9  # nothing moved


def test_a_test_set_that_lost_most_of_its_images_stops_the_download(tmp_path, monkeypatch):
    competition = make_competition(tmp_path / "c", "folders", test=[f"t{i}" for i in range(6)])
    project = tmp_path / "p"
    project.mkdir()
    download_stage(project, competition, monkeypatch)
    for i in range(4):
        (competition / "test" / f"t{i}.png").unlink()
    with pytest.raises(
        ShrunkError,
        match=r"data/images/test holds 6 images but the competition "
        r"now lists 2 test images",
    ):
        download_stage(project, competition, monkeypatch)
    assert stored(project, "test") == [f"t{i}.png" for i in range(6)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_symlinked_train_and_test_folders_are_followed_but_links_inside_them_are_not(
    tmp_path, monkeypatch, layout
):
    disk = make_competition(tmp_path / "other_disk", layout)  # the images on another disk
    write_image(tmp_path / "secret.jpg", size=(20, 18))
    competition, project = tmp_path / "c", tmp_path / "p"
    competition.mkdir()
    project.mkdir()
    for name in ("train", "test"):
        (competition / name).symlink_to(disk / name, target_is_directory=True)
    if layout == "labels_csv":
        (competition / "labels.csv").write_text((disk / "labels.csv").read_text() + "evil,cat\n")
        (disk / "train" / "evil.jpg").symlink_to(tmp_path / "secret.jpg")
    else:
        (disk / "train" / "cat" / "evil.jpg").symlink_to(tmp_path / "secret.jpg")
    download_stage(project, competition, monkeypatch)
    assert len(stored(project, "train")) == 9 and len(stored(project, "test")) == 4
    report = json.loads((project / "data/download_report.json").read_text())
    assert report["failure_reasons"] == {"file_outside_competition": 1}
