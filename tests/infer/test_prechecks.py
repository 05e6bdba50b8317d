"""lib.infer.prechecks: what would fail the ensemble stops the stages before it, before their
work. Each check is proven on the train stage of a project whose data is ready (download, stats
and folds ran): the stage stops with the ensemble's one line and never starts training; the
download stage stops before it stores an image."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

import stages.download
import stages.folds
import stages.stats
import stages.train
from lib.common.errors import UserError
from lib.infer import prechecks
from tests.conftest import write_image, write_params

BREEDS = ["Ankle boot", "basenji", "whippet"]
TEST_IDS = ["t1", "t2", "t3"]


def competition(root: Path, *, test: bool = True) -> Path:
    """images + labels.csv with names for labels (Dog Breed's shape), and its sample."""
    rows = [(f"im{i}", BREEDS[i % 3]) for i in range(12)]
    for i, (image_id, _) in enumerate(rows):
        write_image(root / "train" / f"{image_id}.png", seed=i, size=(20, 20))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("id", "breed"), *rows])
    if test:
        for i, image_id in enumerate(TEST_IDS):
            write_image(root / "test" / f"{image_id}.png", seed=100 + i, size=(20, 20))
        write_sample(root / "sample_submission.csv", TEST_IDS)
    return root


def write_sample(path: Path, ids: list[str], columns: list[str] = BREEDS) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("id", *columns), *((i, *["0.3"] * len(columns)) for i in ids)])
    return path


GOOD = {
    "competition": "comp",
    "submission_format": "proba",
    "folds": 2,
    "train_folds": [0, 1],
    "img_size": 16,
    "epochs": 1,
    "batch_size": 4,
    "arch": "resnet10t",
    "pretrained": "none",
    "workers": 0,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git repo whose download, stats and folds ran on a tiny competition: train@0 is ready."""
    root = tmp_path_factory.mktemp("prechecks")
    competition(root / "comp")
    competition(root / "no-test", test=False)
    write_sample(root / "other_ids.csv", ["t1", "t2", "t9"])
    write_sample(root / "two_columns.csv", TEST_IDS, columns=["breed"])
    (root / "other_classes.csv").write_text("label_id,name\n1,a\n2,b\n7,c\n")
    write_params(root, **GOOD)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], cwd=root, check=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for stage in (stages.download, stages.stats, stages.folds):
            stage.main()
    return root


@pytest.fixture
def train(project, monkeypatch):
    """Runs train@0 in the project with params overrides; returns the calls training got."""
    trained = []
    monkeypatch.setattr(stages.train, "train_fold", lambda *a, **k: trained.append(k["fold"]))
    monkeypatch.setattr(sys, "argv", ["train", "--fold", "0"])
    monkeypatch.chdir(project)

    def run(**overrides) -> list[int]:
        write_params(project, **GOOD | overrides)
        stages.train.main()
        return trained

    run.trained = trained
    return run


def test_with_good_params_training_starts(train):
    assert train() == [0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"competition": "no-test"}, "no-test: no test split (test.json, or test/ images)"),
        (
            {"classes_file": "other_classes.csv"},
            "other_classes.csv: its label ids differ from the competition's labels",
        ),
        (
            {"submission_format": "topk", "metric": "map@3", "sample_submission": None},
            "comp: class name 'Ankle boot' has a space, and a topk submission separates "
            "its labels by "
            "spaces",
        ),
        (
            {"sample_submission": "other_ids.csv"},
            "other_ids.csv: the sample submission's ids do not match the test images: "
            "1 not among them "
            "(t9), 1 test images missing (t3)",
        ),
        (
            {"sample_submission": "two_columns.csv"},
            "two_columns.csv: header id,breed has one value "
            "column; submission_format proba writes one column"
            " per class",
        ),
        (
            {"ensemble_runs": ["no-such-run"]},
            "ensemble_runs: 'no-such-run' is not a folder, a DVC experiment or a git revision",
        ),
        (
            {"ensemble_runs": [], "ensemble_weights": [0.5, 0.5]},
            "ensemble_weights = [0.5, 0.5] is not allowed: expected auto, [] or 1 weights",
        ),
    ],
    ids=[
        "test-split",
        "classes-file",
        "format-vs-labels",
        "sample-ids",
        "sample-header",
        "ensemble-runs",
        "weights-length",
    ],
)
def test_what_would_fail_the_ensemble_stops_train_before_training(train, overrides, message):
    with pytest.raises(UserError) as error:
        train(**overrides)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert train.trained == []  # stopped before training started


def test_training_is_never_called_when_a_check_fails(train):
    with pytest.raises(UserError):
        train(sample_submission="other_ids.csv")
    assert train() == [0]  # the same fixture trains once the sample is right, and only then


def test_the_download_stops_before_storing_an_image(tmp_path, monkeypatch):
    competition(tmp_path / "comp")
    write_sample(tmp_path / "bad.csv", ["t1"])
    write_params(tmp_path, **GOOD | {"sample_submission": "bad.csv"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="bad.csv: the sample submission's ids do not match"):
        stages.download.main()
    assert not (tmp_path / "data").exists()


def test_every_check_is_listed_once_and_runs_in_order(monkeypatch):
    assert len(set(prechecks.CHECKS)) == len(prechecks.CHECKS) >= 6
    ran = []
    monkeypatch.setattr(prechecks, "CHECKS", [lambda s: ran.append(1), lambda s: ran.append(2)])
    prechecks.run_prechecks(None)
    assert ran == [1, 2]
