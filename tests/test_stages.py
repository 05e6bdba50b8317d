"""Stage entry points: a user's mistake ends as one line on stderr and exit code 2."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def run_stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_bad_param_is_one_line_naming_key_value_and_allowed(tmp_path):
    params = repo_params() | {"folds": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage("folds", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: params.yaml: folds = 1 is not allowed: expected an integer >= 2"]


@pytest.mark.parametrize("image_id", ["../x", 2**63])
def test_bad_image_id_in_competition_is_one_line_before_any_download(tmp_path, image_id):
    competition = tmp_path / "comp"
    competition.mkdir()
    (competition / "train.json").write_text(json.dumps({
        "images": [{"url": ["file:a.png"], "image_id": image_id}],
        "annotations": [{"image_id": image_id, "label_id": 1}]}))
    params = repo_params() | {"competition": str(competition)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage("download", tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "train.json: images[0].image_id" in lines[-1]
    assert str(image_id) in lines[-1]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "images").exists()


def test_missing_upstream_out_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    done = run_stage("train", tmp_path, "--fold", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: data/folds.csv not found: run the folds stage first")


def test_stats_and_folds_leave_out_a_truncated_image_and_name_it(tmp_path, image_tree):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params() | {"folds": 2}))
    (tmp_path / "data").mkdir()
    image_tree.rename(tmp_path / "data" / "images")
    truncated = Path("data/images/train/02/203.png")
    (tmp_path / truncated).write_bytes((tmp_path / truncated).read_bytes()[:150])
    folds, stats = run_stage("folds", tmp_path), run_stage("stats", tmp_path)
    assert (folds.returncode, stats.returncode) == (0, 0), folds.stderr + stats.stderr
    assert f"{truncated}: left out of the folds, it does not decode" in folds.stderr
    with (tmp_path / "data" / "folds.csv").open() as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert len(paths) == 21 and "train/02/203.png" not in paths
    summary = json.loads((tmp_path / "data" / "folds_summary.json").read_text())
    assert summary["unreadable"] == ["train/02/203.png"]
    assert json.loads((tmp_path / "data" / "stats.json").read_text())["unreadable"] == [
        str(truncated)]
    assert str(truncated) in stats.stderr


def ensemble_project(tmp_path: Path, **overrides) -> Path:
    """A project with two folds' predictions on 6 labelled images (classes 1 = cat, 2 = dog) and
    3 of the 4 test images (test image 4 could not be downloaded)."""
    import numpy as np

    from lib.predictions import Predictions, save_predictions
    from tests.conftest import write_image

    competition = tmp_path / "comp"
    competition.mkdir()
    labels = {i: 1 + i % 2 for i in range(1, 7)}
    (competition / "train.json").write_text(json.dumps({
        "images": [{"url": ["file:x.png"], "image_id": i} for i in labels],
        "annotations": [{"image_id": i, "label_id": label} for i, label in labels.items()]}))
    (competition / "test.json").write_text(json.dumps({
        "images": [{"url": ["file:x.png"], "image_id": i} for i in (1, 2, 3, 4)]}))
    (competition / "classes.csv").write_text("label_id,name\n1,cat\n2,dog\n")
    rows = ["split,image_id,label,path,fold,group"]
    for i, label in labels.items():
        path = f"train/{label:02d}/{i}.png"
        write_image(tmp_path / "data" / "images" / path, seed=i)
        rows.append(f"train,{i},{label},{path},{int(i > 3)},{i}")
    (tmp_path / "data" / "folds.csv").write_text("\n".join(rows) + "\n")
    classes, prior = np.array([1, 2]), np.array([0.5, 0.5])
    for fold, ids in ((0, [1, 2, 3]), (1, [4, 5, 6])):
        # right on every image but the first of each fold, which is confidently wrong
        probs = np.array([[0.1, 0.9] if labels[i] == 1 else [0.9, 0.1] for i in ids], np.float32)
        probs[1:] = probs[1:, ::-1]
        save_predictions(tmp_path / "predictions" / f"fold{fold}" / "oof.npz", Predictions(
            probs, np.array(ids), classes, splits=np.array(["train"] * 3),
            targets=np.array([labels[i] for i in ids]), prior=prior))
        save_predictions(tmp_path / "predictions" / f"fold{fold}" / "test.npz", Predictions(
            np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32), np.array([3, 1, 2]),
            classes, prior=prior))
    (tmp_path / "runs").mkdir()
    params = repo_params() | {"competition": str(competition), "test_labels": None,
                              "classes_file": str(competition / "classes.csv"),
                              "folds": 2, "train_folds": [0, 1]} | overrides
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_ensemble_writes_both_formats_that_pass_the_check(tmp_path):
    project = ensemble_project(tmp_path, submission_format="proba")
    done = run_stage("ensemble", project)
    assert done.returncode == 0, done.stderr
    with open(project / "submissions/submission.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "cat", "dog"] and [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert [float(v) for v in rows[4][1:]] == [0.5, 0.5]  # no image: the prior
    metrics = json.loads((project / "metrics/ensemble.json").read_text())
    assert metrics["submission"]["filled_missing_images"] == 1
    assert metrics["oof"]["accuracy"] == pytest.approx(4 / 6)
    assert metrics["oof"]["log_loss_clipped"] < metrics["oof"]["log_loss"] + 1e-9
    assert set(metrics) >= {"fold0", "fold1", "oof", "submission"}
    table = (project / "metrics/per_class.csv").read_text().splitlines()
    assert table[0].startswith("label_id,name,images,accuracy")
    assert (project / "metrics/top_losses.png").is_file()
    assert (project / "metrics/oof_confusion.csv").read_text().startswith("image_id,actual")
    checked = run_stage("check_submission", project)
    assert checked.returncode == 0 and "OK (4 rows, proba format" in checked.stdout
    again = run_stage("ensemble", project, "--summary")  # what `make run` ends with
    assert again.returncode == 0 and done.stdout.strip() == again.stdout.strip()
    assert "OOF accuracy 0.6667" in again.stdout

    assert run_stage("check_submission", project, "--format", "label").returncode == 1
    params = yaml.safe_load((project / "params.yaml").read_text()) | {"submission_format": "label"}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage("ensemble", project).returncode == 0
    with open(project / "submissions/submission.csv") as f:
        assert list(csv.reader(f)) == [["id", "predicted"], ["1", "2"], ["2", "1"], ["3", "1"],
                                       ["4", "1"]]
    assert run_stage("check_submission", project).returncode == 0


def test_check_submission_lists_the_problems_and_fails(tmp_path):
    project = ensemble_project(tmp_path, submission_format="label")
    bad = project / "bad.csv"
    bad.write_text("id,predicted\n1,2\n1,2\n2,7\n")
    done = run_stage("check_submission", project, str(bad))
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert any("2 missing ids: 3, 4" in line for line in lines)
    assert any("1 duplicate ids: 1" in line for line in lines)
    assert any("1 unknown labels (line 4: 7; allowed: 1..2)" in line for line in lines)
    assert "Kaggle would reject it" in done.stderr
    missing = run_stage("check_submission", project, "nope.csv")
    assert missing.returncode == 2 and missing.stderr.strip() == "error: nope.csv: file not found"


def test_sample_submission_mismatch_stops_the_ensemble_with_one_line(tmp_path):
    sample = tmp_path / "sample.csv"
    sample.write_text("id,predicted\n1,1\n2,1\n3,1\n")
    project = ensemble_project(tmp_path, sample_submission=str(sample))
    done = run_stage("ensemble", project)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {sample}: the sample submission's ids do not match test.json: 0 not in "
        "test.json (), 1 test.json ids missing (4), 0 repeated ()")
    assert not (project / "submissions/submission.csv").exists()


def test_ensemble_summary_before_any_run_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    done = run_stage("ensemble", tmp_path, "--summary")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: metrics/ensemble.json not found: run `dvc repro` first"
