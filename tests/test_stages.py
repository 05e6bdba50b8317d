"""Stage entry points: a user's mistake ends as one line on stderr and exit code 2."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, default_params


def run_stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def repo_params() -> dict:
    """The default params (tests/params.yaml: never the checkout's params.yaml), for a project
    in a temporary folder: the competition is the repo's demo."""
    return default_params() | {"competition": str(REPO / "data" / "demo")}


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


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The stage's error line, after checking it failed as a user's mistake: exit 2, no
    traceback, one line."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(("stage", "args", "present", "missing", "made_by"), [
    ("stats", [], [], "data/images/train", "download"),
    ("folds", [], [], "data/images", "download"),
    ("train", ["--fold", "0"], [], "data/folds.csv", "folds"),
    ("train", ["--fold", "0"], ["data/folds.csv"], "data/stats.json", "stats"),
    ("lr_find", [], ["data/folds.csv"], "data/stats.json", "stats"),
    ("check_submission", [], [], "submissions/submission.csv", "ensemble"),
])
def test_missing_upstream_out_names_the_stage_that_makes_it(tmp_path, stage, args, present,
                                                            missing, made_by):
    demo = REPO / "data" / "demo"
    params = repo_params() | {"competition": str(demo), "classes_file": str(demo / "classes.csv")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name in present:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("split,image_id,label,path,fold,group\n")
    assert one_error_line(run_stage(stage, tmp_path, *args)) == (
        f"error: {missing} not found: run `dvc repro {made_by}` to make it")


def test_stats_removes_a_killed_runs_temp_files_and_writes_mode_644(tmp_path):
    from tests.common.test_fileio import dead_pid
    from tests.conftest import write_image

    write_image(tmp_path / "data/images/train/01/1.png")
    stale = tmp_path / "data" / f".tmp-{dead_pid()}-0a1b2c3d-stats.json"
    stale.write_text("{")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    umask = os.umask(0o022)
    try:
        done = run_stage("stats", tmp_path)
    finally:
        os.umask(umask)
    assert done.returncode == 0, done.stderr
    assert "removed 1 temp files left by an interrupted run" in done.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["images", "stats.json"]
    assert (tmp_path / "data/stats.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("model_bytes", [b"", b"not a torch file at all\n", "truncated"])
def test_a_damaged_model_is_one_line_naming_it_and_how_to_get_it_back(tmp_path, model_bytes):
    import torch

    model = tmp_path / "models/fold0/model.pt"
    model.parent.mkdir(parents=True)
    if model_bytes == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "arch": "resnet10t"}, model)
        model_bytes = model.read_bytes()[:700]
    model.write_bytes(model_bytes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    assert one_error_line(run_stage("predict", tmp_path, "--fold", "0")).startswith(
        "error: models/fold0/model.pt: not a readable torch file (truncated, empty or another "
        "format: ")


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

    from lib.infer.predictions import Predictions, save_predictions
    from tests.conftest import write_image

    competition = tmp_path / "comp"
    competition.mkdir(parents=True)
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
    metrics = json.loads((project / "metrics/ensemble_detail.json").read_text())
    assert metrics["submission"]["filled_missing_images"] == 1
    assert metrics["oof"]["accuracy"] == pytest.approx(4 / 6)
    assert metrics["oof"]["log_loss_clipped"] < metrics["oof"]["log_loss"] + 1e-9
    assert set(metrics) >= {"fold0", "fold1", "oof", "submission"}
    headline = json.loads((project / "metrics/ensemble.json").read_text())
    assert headline == {"oof": {"accuracy": metrics["oof"]["accuracy"],
                                "log_loss": metrics["oof"]["log_loss_clipped"]}}
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


@pytest.mark.parametrize(("text", "problem"), [
    (b"id,predicted\n1,2\n2,1\n\xff\xfe\x00garbage\x9c\n",
     "is not UTF-8 text (line 4, byte 21: invalid"),
    (b"id,predicted\n" + b"x" * 200_000 + b"\n", "is not a readable CSV (line 2: field larger"),
])
def test_check_submission_of_a_file_that_is_no_csv_is_one_line(tmp_path, text, problem):
    project = ensemble_project(tmp_path, submission_format="label")
    (project / "garbage.csv").write_bytes(text)
    line = one_error_line(run_stage("check_submission", project, "garbage.csv"))
    assert line.startswith("error: garbage.csv: submission ") and problem in line


def test_check_submission_rejects_ids_not_spelled_as_kaggle_matches_them(tmp_path):
    project = ensemble_project(tmp_path, submission_format="label")
    (project / "padded.csv").write_text("id,predicted\n01,2\n 2,1\n3,1\n4,1\n")
    done = run_stage("check_submission", project, "padded.csv")
    assert done.returncode == 1
    assert "padded.csv: 1 malformed ids (an id is letters, digits, - and _; Kaggle matches ids " \
        "as text) (line 3: ' 2')" in done.stdout
    assert "padded.csv: 1 ids not in the test set: 01" in done.stdout


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
    assert done.stderr.strip() == (
        "error: metrics/ensemble_detail.json not found: run `dvc repro ensemble` to make it")


def set_params(project: Path, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text()) | values
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def test_ensemble_refuses_predictions_of_an_older_test_json(tmp_path):
    project = ensemble_project(tmp_path)
    test_json = project / "comp" / "test.json"
    test_json.write_text(json.dumps({  # the ids shifted: the predictions are for 1..3
        "images": [{"url": ["file:x.png"], "image_id": i} for i in (11, 12, 13, 14)]}))
    done = run_stage("ensemble", project)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: predictions: test predictions do not match the current test images: 3 ids not "
        "in test.json (1, 2, 3), 0 test images on disk without a prediction (); run "
        "`dvc repro predict`")
    assert not (project / "submissions/submission.csv").exists()


def test_ensemble_refuses_when_test_images_on_disk_were_not_predicted(tmp_path):
    from tests.conftest import write_image
    project = ensemble_project(tmp_path)
    for image_id in (1, 2, 3, 4):  # image 4 arrived after predict ran
        write_image(project / "data/images/test" / f"{image_id}.png", seed=image_id)
    done = run_stage("ensemble", project)
    assert done.returncode == 2
    assert "1 test images on disk without a prediction (4); run `dvc repro predict`" in \
        done.stderr.strip().splitlines()[-1]


def test_ensemble_refuses_when_no_test_image_has_a_prediction(tmp_path):
    import numpy as np

    from lib.infer.predictions import Predictions, save_predictions
    project = ensemble_project(tmp_path)
    for fold in (0, 1):
        save_predictions(project / "predictions" / f"fold{fold}" / "test.npz", Predictions(
            np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.array([1, 2])))
    done = run_stage("ensemble", project)
    assert done.returncode == 2
    assert "no test image has a prediction: every row would be a fallback" in done.stderr


def test_competition_files_follow_the_competition(tmp_path):
    project = ensemble_project(tmp_path, classes_file="auto", test_labels="auto",
                               sample_submission="auto", submission_format="proba")
    (project / "comp" / "test_labels.csv").write_text("id,label\n1,1\n2,2\n3,1\n4,2\n")
    done = run_stage("ensemble", project)
    assert done.returncode == 0, done.stderr
    assert (project / "submissions/submission.csv").read_text().startswith("id,cat,dog\n")
    assert json.loads((project / "metrics/ensemble.json").read_text())["test"]["accuracy"] == 0.25

    other = project / "digits"  # another competition: the demo's names must not follow
    shutil.copytree(project / "comp", other)
    (other / "classes.csv").unlink()
    (other / "test_labels.csv").unlink()
    set_params(project, competition=str(other))
    assert run_stage("ensemble", project).returncode == 0
    assert (project / "submissions/submission.csv").read_text().startswith("id,1,2\n")
    assert "test" not in json.loads((project / "metrics/ensemble.json").read_text())


def test_a_classes_file_of_another_competition_is_refused(tmp_path):
    project = ensemble_project(tmp_path)
    (project / "comp" / "classes.csv").write_text("label_id,name\n1,cat\n3,Pullover\n")
    done = run_stage("ensemble", project)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {project / 'comp' / 'classes.csv'}: its label ids differ from the "
        "competition's labels: 1 (2) without a name, 1 (3) not in the competition; is "
        "classes_file for another competition?")


def stand_in_kaggle(folder: Path) -> Path:
    """A `kaggle` executable that records its arguments, one per line, and succeeds."""
    folder.mkdir(exist_ok=True)
    script = folder / "kaggle"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {folder / 'args.txt'}\n"
                      "echo 'Successfully submitted'\n")
    script.chmod(0o755)
    return folder


def run_with_kaggle(project: Path, bin_dir: Path, home: Path, *args: str):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "stages.submit", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_submit_checks_then_calls_kaggle_with_a_message_naming_the_run(tmp_path):
    project = ensemble_project(tmp_path / "p", kaggle_competition="dog-breed-identification")
    assert run_stage("ensemble", project).returncode == 0
    bin_dir, home = stand_in_kaggle(tmp_path / "bin"), tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)

    done = run_with_kaggle(project, bin_dir, home)  # no kaggle.json yet
    assert done.returncode == 2 and not (bin_dir / "args.txt").exists()
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: no Kaggle credentials in {home / '.kaggle'}: put your API token in "
        "~/.kaggle/kaggle.json")

    (home / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    done = run_with_kaggle(project, bin_dir, home)
    assert done.returncode == 0, done.stderr
    assert "OK (4 rows" in done.stdout and "Successfully submitted" in done.stdout
    args = (bin_dir / "args.txt").read_text().splitlines()
    assert args[:6] == ["competitions", "submit", "-c", "dog-breed-identification", "-f",
                        "submissions/submission.csv"]
    assert args[6] == "-m" and args[7].startswith("workspace") and \
        "| tf_efficientnet_lite0 | 48px | 2 folds | tta flip | OOF acc 0.6667" in args[7]

    (project / "submissions/submission.csv").write_text("id,predicted\n1,2\n")
    (bin_dir / "args.txt").unlink()
    done = run_with_kaggle(project, bin_dir, home)
    assert done.returncode == 1 and "Kaggle would reject it" in done.stderr
    assert not (bin_dir / "args.txt").exists()  # a bad file is never uploaded


def test_submit_without_a_slug_says_what_to_set(tmp_path):
    project = ensemble_project(tmp_path / "p")
    done = run_with_kaggle(project, stand_in_kaggle(tmp_path / "bin"), tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: kaggle_competition is null in params.yaml: set it to the competition's slug, "
        "the last part of its URL (e.g. kaggle_competition: dog-breed-identification)")


def test_a_failed_ensemble_keeps_the_last_good_submission_and_history(tmp_path):
    project = ensemble_project(tmp_path / "p")
    assert run_stage("ensemble", project).returncode == 0
    good = (project / "submissions/submission.csv").read_bytes()
    kept = list((project / "submissions/history").iterdir())
    assert [p.name.split("_", 1)[1] for p in kept] == ["workspace_oof-acc0.6667.csv"]
    assert kept[0].read_bytes() == good

    set_params(project, clip_high=0.3)  # a typo: the stage stops before writing anything
    done = run_stage("ensemble", project)
    assert done.returncode == 2 and "clip_high = 0.3 is not allowed" in done.stderr
    assert (project / "submissions/submission.csv").read_bytes() == good
    assert len(list((project / "submissions/history").iterdir())) == 1


def test_a_queued_experiment_keeps_its_copy_in_the_project(tmp_path):
    project = ensemble_project(tmp_path / "workspace")
    root = tmp_path / "project"  # what DVC_ROOT names for a run in a temporary copy
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_ROOT": str(root),
           "DVC_EXP_NAME": "lofty-pads"}
    done = subprocess.run([sys.executable, "-m", "stages.ensemble"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [p.name.split("_", 1)[1] for p in (root / "submissions/history").iterdir()] == [
        "lofty-pads_oof-acc0.6667.csv"]
    assert not (project / "submissions/history").exists()
