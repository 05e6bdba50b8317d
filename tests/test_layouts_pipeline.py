"""End to end on a Dog-Breed-style competition (layout labels_csv: train/<hex id>.jpg,
labels.csv of breed names, test/, a sample submission of the sorted breeds): real `dvc repro`
down to a proba submission in the sample's shape."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.helpers import run
from tests.test_pipeline import commit, make_project, ran_stages

pytestmark = pytest.mark.slow
BREEDS = {1: "whippet", 2: "affenpinscher", 3: "basenji"}  # demo label -> breed
PER_BREED, TEST_IMAGES = 10, 8
CLIP_LOW, CLIP_HIGH = 0.01, 0.99


def hex_id(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def make_dog_breed(folder: Path, demo: Path) -> list[str]:
    """The competition in `folder`, from the demo's real images; returns the sample's header."""
    train = json.loads((demo / "train.json").read_text())
    label_of = {a["image_id"]: a["label_id"] for a in train["annotations"]}
    rows = []
    for label, breed in BREEDS.items():
        ids = [i for i in sorted(label_of) if label_of[i] == label][:PER_BREED]
        for i in ids:
            image_id = hex_id(f"train{i}")
            to_jpeg(demo / "images" / "train" / f"{i}.png", folder / "train" / f"{image_id}.jpg")
            rows.append((image_id, breed))
    random.Random(0).shuffle(rows)  # Kaggle's labels.csv is in no particular order
    write_csv(folder / "labels.csv", ["id", "breed"], rows)
    test_ids = []
    for i in range(1, TEST_IMAGES + 1):
        image_id = hex_id(f"test{i}")
        to_jpeg(demo / "images" / "test" / f"{i}.png", folder / "test" / f"{image_id}.jpg")
        test_ids.append(image_id)
    random.Random(1).shuffle(test_ids)  # the sample's row order, which the submission keeps
    header = ["id", *sorted(BREEDS.values())]
    write_csv(
        folder / "sample_submission.csv",
        header,
        [[i, *[f"{1 / len(BREEDS):.6f}"] * len(BREEDS)] for i in test_ids],
    )
    return header


def to_jpeg(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").save(target, "JPEG", quality=95)


def write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_dog_breed_layout_gives_a_proba_submission_in_the_samples_shape(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("dogs"))
    header = make_dog_breed(project / "data" / "dogs", project / "data" / "demo")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(
        competition="data/dogs", submission_format="proba", clip_low=CLIP_LOW, clip_high=CLIP_HIGH
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit(project, "dog breed")

    output = run(["dvc", "repro"], project)
    assert {"download", "folds", "train@0", "predict@0", "ensemble"} <= ran_stages(output)

    assert (
        project / "data/classes.csv"
    ).read_text() == "label_id,name\n1,affenpinscher\n2,basenji\n3,whippet\n"
    with open(project / "data/dogs/sample_submission.csv") as f:
        sample = list(csv.reader(f))
    with open(project / "submissions/submission.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == header == sample[0]
    assert [r[0] for r in rows[1:]] == [r[0] for r in sample[1:]]  # hex ids, the sample's order
    for row in rows[1:]:
        values = [float(v) for v in row[1:]]
        assert sum(values) == pytest.approx(1.0, abs=1e-4)
        # clipped to [0.01, 0.99], then renormalised (a row sums to at most 1 + 2 x 0.01)
        assert min(values) >= CLIP_LOW / (1 + 2 * CLIP_LOW) - 1e-6 and max(values) <= CLIP_HIGH
    report = json.loads((project / "data/download_report.json").read_text())
    assert report["downloaded"] == len(BREEDS) * PER_BREED + TEST_IMAGES and report["failed"] == 0
    done = run(["python", "-m", "commands.check_submission"], project)
    assert "OK" in done


def demo_writer(demo: Path):
    """A layout fixture's image writer that copies the demo's real images (3 distinct classes
    of clothes, so a tiny model learns something) as JPEG: class index c takes demo label c+1,
    image index i its i-th image."""
    train = json.loads((demo / "train.json").read_text())
    ids_of: dict[int, list[int]] = {}
    for a in sorted(train["annotations"], key=lambda a: a["image_id"]):
        if (demo / "images" / "train" / f"{a['image_id']}.png").is_file():
            ids_of.setdefault(a["label_id"], []).append(a["image_id"])

    def write(path: Path, label: int, index: int) -> None:
        ids = ids_of[label + 1]
        to_jpeg(demo / "images" / "train" / f"{ids[index % len(ids)]}.png", path)

    return write


def set_params(project: Path, **values) -> None:
    """`values`, and the least work that still runs every stage: one fold's model, no TTA."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update({"train_folds": [0], "tta": "none"} | values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_tinyimagenet_gives_a_label_submission_of_wnids_with_ids_spelt_as_the_sample(
    tmp_path_factory,
):
    from tests.acquire.test_tinyimagenet import WNIDS, make_tinyimagenet

    project = make_project(tmp_path_factory.mktemp("tiny"))
    folder = project / "data" / "tiny"
    make_tinyimagenet(
        folder, per_class=10, val_per_class=2, test=6, image=demo_writer(project / "data" / "demo")
    )
    names = [f"test_{i}.JPEG" for i in range(6)]
    random.Random(2).shuffle(names)
    write_csv(folder / "sample_submission.csv", ["file", "wnid"], [[n, WNIDS[0]] for n in names])
    set_params(project, competition="data/tiny", metric="f1_macro")
    commit(project, "tinyimagenet")

    output = run(["dvc", "repro"], project)
    assert {"download", "folds", "train@0", "predict@0", "ensemble"} <= ran_stages(output)
    with open(project / "submissions/submission.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "wnid"]
    assert [r[0] for r in rows[1:]] == names  # spelt and ordered as the sample
    assert {r[1] for r in rows[1:]} <= set(WNIDS)  # the competition's labels, not our ids
    report = json.loads((project / "data/download_report.json").read_text())
    assert report["downloaded"] == 3 * 10 + 3 * 2 + 6 and report["failed"] == 0
    with open(project / "data/folds.csv") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    assert splits.count("validation") == 6  # val/ is the validation split (pooled)
    headline = json.loads((project / "metrics/ensemble.json").read_text())
    assert 0 <= headline["oof"]["f1_macro"] <= 1
    assert (
        "goldfish, Carassius auratus (n01443537)" in (project / "metrics/per_class.csv").read_text()
    )  # words.txt names the reports' classes
    assert "OK (6 rows, label format" in run(["python", "-m", "commands.check_submission"], project)


def test_pets_by_pattern_give_a_top3_submission_scored_by_map3_against_the_held_out_answers(
    tmp_path_factory,
):
    from lib.infer.metrics import map_at_k_lists
    from tests.acquire.test_named_files import BREEDS, make_pets

    project = make_project(tmp_path_factory.mktemp("pets"))
    make_pets(project / "data" / "pets", per_breed=12, image=demo_writer(project / "data" / "demo"))
    set_params(
        project,
        competition="data/pets",
        metric="map@3",
        submission_format="topk",
        test_share=0.25,
        kaggle_competition="pets",
    )
    commit(project, "pets")

    run(["dvc", "repro"], project)
    with open(project / "submissions/submission.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "predicted"] and len(rows) == 1 + 3 * 3  # 3 of each 12 held out
    guesses = [row[1].split(" ") for row in rows[1:]]
    assert all(sorted(g) == sorted(BREEDS) for g in guesses)  # 3 distinct names, best first
    truth = [row[0].rsplit("_", 1)[0] for row in rows[1:]]  # the name carries the answer
    headline = json.loads((project / "metrics/ensemble.json").read_text())
    assert headline["test"]["map@3"] == pytest.approx(map_at_k_lists(guesses, truth, 3))
    assert headline["test"]["map@3"] >= 1 / 3 and 1 / 3 <= headline["oof"]["map@3"] <= 1
    done = run(["python", "-m", "commands.submit", "--dry-run"], project)
    assert f"OOF map@3 {headline['oof']['map@3']:.4f}" in done
