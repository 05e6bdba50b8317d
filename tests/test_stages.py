"""Stage and command entry points: a user's mistake ends as one line on stderr and exit code 2.
Each runs in this process (``call_stage``, ``call_command``) unless it needs a process of its
own (``run_stage``, ``run_command``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import (
    call_command,
    call_module,
    call_stage,
    one_error_line,
    repo_params,
    run_command,
    run_stage,
)


def test_bad_param_is_one_line_naming_key_value_and_allowed(tmp_path):
    params = repo_params() | {"folds": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert one_error_line(call_stage("folds", tmp_path)) == (
        "error: params.yaml: folds = 1 is not allowed: expected an integer >= 2"
    )


@pytest.mark.parametrize("image_id", ["../x", 2**63])
def test_bad_image_id_in_competition_is_one_line_before_any_download(tmp_path, image_id):
    competition = tmp_path / "comp"
    competition.mkdir()
    (competition / "train.json").write_text(
        json.dumps(
            {
                "images": [{"url": ["file:a.png"], "image_id": image_id}],
                "annotations": [{"image_id": image_id, "label_id": 1}],
            }
        )
    )
    params = repo_params() | {"competition": str(competition)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    line = one_error_line(call_stage("download", tmp_path))
    assert "train.json: images[0].image_id" in line and str(image_id) in line
    assert not (tmp_path / "data" / "images").exists()


@pytest.mark.parametrize(
    ("module", "args", "present", "missing", "made_by"),
    [
        ("stages.stats", [], [], "data/images/train", "download"),
        ("stages.folds", [], [], "data/images", "download"),
        ("stages.train", ["--fold", "0"], [], "data/folds.csv", "folds"),
        ("stages.train", ["--fold", "0"], ["data/folds.csv"], "data/stats.json", "stats"),
        ("commands.lr_find", [], ["data/folds.csv"], "data/stats.json", "stats"),
        ("commands.check_submission", [], [], "submissions/submission.csv", "ensemble"),
    ],
)
def test_missing_upstream_out_names_the_stage_that_makes_it(
    tmp_path, module, args, present, missing, made_by
):
    demo = REPO / "data" / "demo"
    params = repo_params() | {"competition": str(demo), "classes_file": str(demo / "classes.csv")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name in present:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("split,image_id,label,path,fold,group\n")
    assert one_error_line(call_module(module, tmp_path, *args)) == (
        f"error: {missing} not found: run `dvc repro {made_by}` to make it"
    )


def test_stats_removes_a_killed_runs_temp_files_and_writes_mode_644(tmp_path):
    from tests.common.test_fileio import dead_pid
    from tests.conftest import write_image

    write_image(tmp_path / "data/images/train/01/1.png")
    stale = tmp_path / "data" / f".tmp-{dead_pid()}-0a1b2c3d-stats.json"
    stale.write_text("{")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    umask = os.umask(0o022)
    try:
        done = call_stage("stats", tmp_path)
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
    assert one_error_line(call_stage("predict", tmp_path, "--fold", "0")).startswith(
        "error: models/fold0/model.pt: not a readable torch file (truncated, empty or another "
        "format: "
    )


def test_stats_and_folds_leave_out_a_truncated_image_and_name_it(tmp_path, image_tree):
    params = repo_params() | {"folds": 2, "train_folds": [0, 1]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    image_tree.rename(tmp_path / "data" / "images")
    truncated = Path("data/images/train/02/203.png")
    (tmp_path / truncated).write_bytes((tmp_path / truncated).read_bytes()[:150])
    folds, stats = call_stage("folds", tmp_path), call_stage("stats", tmp_path)
    assert (folds.returncode, stats.returncode) == (0, 0), folds.stderr + stats.stderr
    assert f"{truncated}: left out of the folds, it does not decode" in folds.stderr
    with (tmp_path / "data" / "folds.csv").open() as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert len(paths) == 21 and "train/02/203.png" not in paths
    summary = json.loads((tmp_path / "data" / "folds_summary.json").read_text())
    assert summary["unreadable"] == ["train/02/203.png"]
    assert json.loads((tmp_path / "data" / "stats.json").read_text())["unreadable"] == [
        str(truncated)
    ]
    assert str(truncated) in stats.stderr


def test_folds_decodes_only_the_images_the_download_did_not(tmp_path, image_tree):
    from lib.common.decoded import add_decoded, digest

    params = repo_params() | {"folds": 2, "train_folds": [0, 1]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    images = tmp_path / "data" / "images"
    image_tree.rename(images)
    labelled = sorted(p for split in ("train", "validation") for p in (images / split).rglob("*.*"))
    add_decoded(images, b"".join(digest(p.read_bytes()) for p in labelled))
    truncated = images / "train" / "02" / "203.png"  # changed since: its digest is not known
    truncated.write_bytes(truncated.read_bytes()[:150])
    folds = call_stage("folds", tmp_path)
    assert folds.returncode == 0, folds.stderr
    assert f"{len(labelled) - 1} of {len(labelled)} images known to decode" in folds.stderr
    assert "203.png: left out of the folds, it does not decode" in folds.stderr


def ensemble_project(tmp_path: Path, **overrides) -> Path:
    """A project with two folds' predictions on 6 labelled images (classes 1 = cat, 2 = dog) and
    3 of the 4 test images (test image 4 could not be downloaded)."""
    import numpy as np

    from lib.infer.predictions import Predictions, save_predictions
    from tests.conftest import write_image

    competition = tmp_path / "comp"
    competition.mkdir(parents=True)
    labels = {i: 1 + i % 2 for i in range(1, 7)}
    (competition / "train.json").write_text(
        json.dumps(
            {
                "images": [{"url": ["file:x.png"], "image_id": i} for i in labels],
                "annotations": [{"image_id": i, "label_id": label} for i, label in labels.items()],
            }
        )
    )
    (competition / "test.json").write_text(
        json.dumps({"images": [{"url": ["file:x.png"], "image_id": i} for i in (1, 2, 3, 4)]})
    )
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
        save_predictions(
            tmp_path / "predictions" / f"fold{fold}" / "oof.npz",
            Predictions(
                probs,
                np.array(ids),
                classes,
                splits=np.array(["train"] * 3),
                targets=np.array([labels[i] for i in ids]),
                prior=prior,
            ),
        )
        save_predictions(
            tmp_path / "predictions" / f"fold{fold}" / "test.npz",
            Predictions(
                np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32),
                np.array([3, 1, 2]),
                classes,
                prior=prior,
            ),
        )
    (tmp_path / "runs").mkdir()
    params = (
        repo_params()
        | {
            "competition": str(competition),
            "test_labels": None,
            "classes_file": str(competition / "classes.csv"),
            "folds": 2,
            "train_folds": [0, 1],
        }
        | overrides
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_ensemble_writes_both_formats_that_pass_the_check(tmp_path):
    project = ensemble_project(tmp_path, submission_format="proba")
    done = call_stage("ensemble", project)
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
    assert headline == {
        "oof": {
            "accuracy": metrics["oof"]["accuracy"],
            "log_loss": metrics["oof"]["log_loss_clipped"],
        }
    }
    table = (project / "metrics/per_class.csv").read_text().splitlines()
    assert table[0].startswith("label_id,name,images,accuracy")
    for picture in (
        "top_losses.png",
        "confusion_counts.png",
        "confusion_normalized.png",
        "curves.png",
        "report.html",
    ):
        assert (project / "reports" / picture).is_file(), picture
    assert "0.6667" in (project / "reports/report.html").read_text()
    assert (project / "metrics/oof_confusion.csv").read_text().startswith("image_id,actual")
    checked = call_command("check_submission", project)
    assert checked.returncode == 0 and "OK (4 rows, proba format" in checked.stdout
    again = call_stage("ensemble", project, "--summary")  # what `make run` ends with
    assert again.returncode == 0 and done.stdout.strip() == again.stdout.strip()
    assert "OOF accuracy 0.6667" in again.stdout

    assert call_command("check_submission", project, "--format", "label").returncode == 1
    params = yaml.safe_load((project / "params.yaml").read_text()) | {"submission_format": "label"}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert call_stage("ensemble", project).returncode == 0
    with open(project / "submissions/submission.csv") as f:
        assert list(csv.reader(f)) == [
            ["id", "predicted"],
            ["1", "2"],
            ["2", "1"],
            ["3", "1"],
            ["4", "1"],
        ]
    assert call_command("check_submission", project).returncode == 0


def test_check_submission_lists_the_problems_and_fails(tmp_path):
    project = ensemble_project(tmp_path, submission_format="label")
    bad = project / "bad.csv"
    bad.write_text("id,predicted\n1,2\n1,2\n2,7\n")
    done = call_command("check_submission", project, str(bad))
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert any("2 missing ids: 3, 4" in line for line in lines)
    assert any("1 duplicate ids: 1" in line for line in lines)
    assert any("1 unknown labels (line 4: 7; allowed: 1..2)" in line for line in lines)
    assert "Kaggle would reject it" in done.stderr
    missing = call_command("check_submission", project, "nope.csv")
    assert one_error_line(missing) == "error: nope.csv: file not found"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            b"id,predicted\n1,2\n2,1\n\xff\xfe\x00garbage\x9c\n",
            "is not UTF-8 text (line 4, byte 21: invalid",
        ),
        (b"id,predicted\n" + b"x" * 200_000 + b"\n", "is not a readable CSV (line 2: field larger"),
    ],
)
def test_check_submission_of_a_file_that_is_no_csv_is_one_line(tmp_path, text, problem):
    project = ensemble_project(tmp_path, submission_format="label")
    (project / "garbage.csv").write_bytes(text)
    line = one_error_line(call_command("check_submission", project, "garbage.csv"))
    assert line.startswith("error: garbage.csv: submission ") and problem in line


def test_check_submission_rejects_ids_not_spelled_as_kaggle_matches_them(tmp_path):
    project = ensemble_project(tmp_path, submission_format="label")
    (project / "padded.csv").write_text("id,predicted\n01,2\n 2,1\n3,1\n4,1\n")
    done = call_command("check_submission", project, "padded.csv")
    assert done.returncode == 1
    assert (
        "padded.csv: 1 malformed ids (an id is letters, digits, - and _, optionally with the "
        "image's extension; Kaggle matches ids as text) (line 3: ' 2')" in done.stdout
    )
    assert "padded.csv: 1 ids not in the test set: 01" in done.stdout


def test_sample_submission_mismatch_stops_the_ensemble_with_one_line(tmp_path):
    sample = tmp_path / "sample.csv"
    sample.write_text("id,predicted\n1,1\n2,1\n3,1\n")
    project = ensemble_project(tmp_path, sample_submission=str(sample))
    assert one_error_line(call_stage("ensemble", project)) == (
        f"error: {sample}: the sample submission's ids do not match the test images: 0 not "
        "among them (), 1 test images missing (4), 0 repeated ()"
    )
    assert not (project / "submissions/submission.csv").exists()


def test_ensemble_summary_before_any_run_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    assert one_error_line(call_stage("ensemble", tmp_path, "--summary")) == (
        "error: metrics/ensemble_detail.json not found: run `dvc repro ensemble` to make it"
    )


def set_params(project: Path, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text()) | values
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def test_ensemble_refuses_predictions_of_an_older_test_json(tmp_path):
    project = ensemble_project(tmp_path)
    test_json = project / "comp" / "test.json"
    test_json.write_text(
        json.dumps(
            {  # the ids shifted: the predictions are for 1..3
                "images": [{"url": ["file:x.png"], "image_id": i} for i in (11, 12, 13, 14)]
            }
        )
    )
    assert one_error_line(call_stage("ensemble", project)) == (
        "error: predictions: test predictions do not match the current test images: 3 ids not "
        "in test.json (1, 2, 3), 0 test images on disk without a prediction (); run "
        "`dvc repro predict`"
    )
    assert not (project / "submissions/submission.csv").exists()


def test_ensemble_refuses_when_test_images_on_disk_were_not_predicted(tmp_path):
    from tests.conftest import write_image

    project = ensemble_project(tmp_path)
    for image_id in (1, 2, 3, 4):  # image 4 arrived after predict ran
        write_image(project / "data/images/test" / f"{image_id}.png", seed=image_id)
    assert (
        "1 test images on disk without a prediction (4); run `dvc repro predict`"
        in one_error_line(call_stage("ensemble", project))
    )


def test_ensemble_refuses_when_no_test_image_has_a_prediction(tmp_path):
    import numpy as np

    from lib.infer.predictions import Predictions, save_predictions

    project = ensemble_project(tmp_path)
    for fold in (0, 1):
        save_predictions(
            project / "predictions" / f"fold{fold}" / "test.npz",
            Predictions(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.array([1, 2])),
        )
    assert "no test image has a prediction: every row would be a fallback" in one_error_line(
        call_stage("ensemble", project)
    )


def test_competition_files_follow_the_competition(tmp_path):
    project = ensemble_project(
        tmp_path,
        classes_file="auto",
        test_labels="auto",
        sample_submission="auto",
        submission_format="proba",
    )
    (project / "comp" / "test_labels.csv").write_text("id,label\n1,1\n2,2\n3,1\n4,2\n")
    done = call_stage("ensemble", project)
    assert done.returncode == 0, done.stderr
    assert (project / "submissions/submission.csv").read_text().startswith("id,cat,dog\n")
    assert json.loads((project / "metrics/ensemble.json").read_text())["test"]["accuracy"] == 0.25

    other = project / "digits"  # another competition: the demo's names must not follow
    shutil.copytree(project / "comp", other)
    (other / "classes.csv").unlink()
    (other / "test_labels.csv").unlink()
    set_params(project, competition=str(other))
    assert call_stage("ensemble", project).returncode == 0
    assert (project / "submissions/submission.csv").read_text().startswith("id,1,2\n")
    assert "test" not in json.loads((project / "metrics/ensemble.json").read_text())


def test_a_classes_file_of_another_competition_is_refused(tmp_path):
    project = ensemble_project(tmp_path)
    (project / "comp" / "classes.csv").write_text("label_id,name\n1,cat\n3,Pullover\n")
    assert one_error_line(call_stage("ensemble", project)) == (
        f"error: {project / 'comp' / 'classes.csv'}: its label ids differ from the "
        "competition's labels: 1 (2) without a name, 1 (3) not in the competition; is "
        "classes_file for another competition?"
    )


def stand_in_kaggle(folder: Path) -> Path:
    """A `kaggle` executable that records its arguments, one per line, and succeeds."""
    folder.mkdir(exist_ok=True)
    script = folder / "kaggle"
    script.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {folder / 'args.txt'}\necho 'Successfully submitted'\n"
    )
    script.chmod(0o755)
    return folder


def run_with_kaggle(project: Path, bin_dir: Path, home: Path, *args: str):
    """`commands.submit` in a process of its own (the kaggle tool's output is the child's, on
    the process's descriptors), with `bin_dir` first on PATH, `home` as HOME and no KAGGLE_
    variables."""
    with pytest.MonkeyPatch.context() as env:
        for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
            env.delenv(key, raising=False)
        return run_command(
            "submit",
            project,
            *args,
            env={"HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        )


def test_submit_checks_then_calls_kaggle_with_a_message_naming_the_run(tmp_path):
    project = ensemble_project(tmp_path / "p", kaggle_competition="dog-breed-identification")
    assert call_stage("ensemble", project).returncode == 0
    bin_dir, home = stand_in_kaggle(tmp_path / "bin"), tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)

    done = run_with_kaggle(project, bin_dir, home)  # no kaggle.json yet
    assert not (bin_dir / "args.txt").exists()
    assert one_error_line(done).startswith(
        f"error: no Kaggle credentials in {home / '.kaggle'}: put your API token in "
        "~/.kaggle/kaggle.json"
    )

    (home / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    done = run_with_kaggle(project, bin_dir, home)
    assert done.returncode == 0, done.stderr
    assert "OK (4 rows" in done.stdout and "Successfully submitted" in done.stdout
    args = (bin_dir / "args.txt").read_text().splitlines()
    assert args[:6] == [
        "competitions",
        "submit",
        "-c",
        "dog-breed-identification",
        "-f",
        "submissions/submission.csv",
    ]
    assert (
        args[6] == "-m"
        and args[7].startswith("workspace")
        and "| tf_efficientnet_lite0 | 48px | 2 folds | tta flip | OOF acc 0.6667" in args[7]
    )

    (project / "submissions/submission.csv").write_text("id,predicted\n1,2\n")
    (bin_dir / "args.txt").unlink()
    done = run_with_kaggle(project, bin_dir, home)
    assert done.returncode == 1 and "Kaggle would reject it" in done.stderr
    assert not (bin_dir / "args.txt").exists()  # a bad file is never uploaded


def test_submit_without_a_slug_says_what_to_set(tmp_path):
    project = ensemble_project(tmp_path / "p")
    done = run_with_kaggle(project, stand_in_kaggle(tmp_path / "bin"), tmp_path)
    assert one_error_line(done) == (
        "error: kaggle_competition is null in params.yaml: set it to the competition's slug, "
        "the last part of its URL (e.g. kaggle_competition: dog-breed-identification)"
    )


def test_a_failed_ensemble_keeps_the_last_good_submission_and_history(tmp_path):
    project = ensemble_project(tmp_path / "p")
    assert call_stage("ensemble", project).returncode == 0
    good = (project / "submissions/submission.csv").read_bytes()
    kept = list((project / "submissions/history").iterdir())
    assert [p.name.split("_", 1)[1] for p in kept] == ["workspace_oof-acc0.6667.csv"]
    assert kept[0].read_bytes() == good

    set_params(project, clip_high=0.3)  # a typo: the stage stops before writing anything
    assert "clip_high = 0.3 is not allowed" in one_error_line(call_stage("ensemble", project))
    assert (project / "submissions/submission.csv").read_bytes() == good
    assert len(list((project / "submissions/history").iterdir())) == 1


def test_a_queued_experiment_keeps_its_copy_in_the_project(tmp_path, monkeypatch):
    project = ensemble_project(tmp_path / "workspace")
    root = tmp_path / "project"  # what DVC_ROOT names for a run in a temporary copy
    monkeypatch.setenv("DVC_ROOT", str(root))
    monkeypatch.setenv("DVC_EXP_NAME", "lofty-pads")
    done = call_stage("ensemble", project)
    assert done.returncode == 0, done.stderr
    assert [p.name.split("_", 1)[1] for p in (root / "submissions/history").iterdir()] == [
        "lofty-pads_oof-acc0.6667.csv"
    ]
    assert not (project / "submissions/history").exists()


def test_predict_with_no_test_images_stops_instead_of_predicting_none(tmp_path, monkeypatch):
    from lib.common.errors import UserError
    from lib.train.checkpoint import save_checkpoint
    from lib.train.model import create_model
    from stages import predict

    model = create_model("resnet10t", num_classes=2, pretrained="none")
    save_checkpoint(
        tmp_path / "models/fold0/model.pt",
        model=model,
        arch="resnet10t",
        classes=[1, 2],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        img_size=16,
        params={},
    )
    (tmp_path / "data/images/test").mkdir(parents=True)  # a download that found none
    (tmp_path / "data/folds.csv").write_text("split,image_id,label,path,fold,group\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["predict", "--fold", "0"])
    with pytest.raises(
        UserError,
        match=r"data/images/test: no test images to predict; run "
        r"`dvc repro download`",
    ):
        predict.main()


@pytest.mark.parametrize(
    ("metric", "said"),
    [
        (
            "qwk",
            "ensemble_weights auto: fitted to log_loss (metric qwk is piecewise constant in "
            "the weights)",
        ),
        ("log_loss", "ensemble_weights auto: fitted to log_loss\n"),
    ],
)
def test_fitted_weights_say_their_objective_and_the_metric_is_scored_nested(tmp_path, metric, said):
    project = ensemble_project(
        tmp_path, metric=metric, ensemble_weights="auto", ensemble_runs=["runs/b"]
    )
    shutil.copytree(project / "predictions", project / "runs" / "b")
    done = run_stage("ensemble", project)
    assert done.returncode == 0, done.stderr
    assert said in done.stderr
    detail = json.loads((project / "metrics/ensemble_detail.json").read_text())
    headline = json.loads((project / "metrics/ensemble.json").read_text())
    assert detail["weights"]["metric"] == metric and detail["weights"]["objective"] == "log_loss"
    # the nested blend's score (log loss as submitted: clipped)
    assert headline["oof"][metric] == detail["oof"][metric.replace("log_loss", "log_loss_clipped")]
    assert "oof_fitted" in detail


def test_download_refuses_a_submission_shape_the_sample_contradicts_before_any_image(tmp_path):
    project = ensemble_project(tmp_path, submission_format="label", metric="map@5")
    (project / "comp" / "sample_submission.csv").write_text("Image,Id\n1.png,w_1 w_2 w_3 w_4 w_5\n")
    shutil.rmtree(project / "data" / "images")
    done = run_stage("download", project)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {project / 'comp' / 'sample_submission.csv'}: its Id cells hold 5 "
        "space-separated labels; submission_format label writes one: is submission_format "
        "topk (with metric map@5)?"
    )
    assert not (project / "data" / "images").exists()


def test_aug_grid_names_each_row_by_its_class(tmp_path):
    project = ensemble_project(tmp_path, aug="medium")
    done = run_command("aug_grid", project, "--images", "3", "--copies", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "wrote reports/aug_medium.png: 3 training images (2 classes), 2 'medium' copies each"
    )
    from PIL import Image

    grid = Image.open(project / "reports" / "aug_medium.png")
    assert grid.width > 3 * 128  # a column of class names left of the 3 images of each row

    import pandas as pd

    from commands.aug_grid import one_per_class

    folds = pd.DataFrame({"label": [2, 1, 1, 2, 3, 3], "path": list("abcdef")})
    assert one_per_class(folds, 2, seed=0)["label"].tolist() == [1, 2]
    five = one_per_class(folds, 5, seed=0)  # every class once, then two more at random
    assert len(five) == 5 and five["label"].nunique() == 3
    assert five["label"].is_monotonic_increasing  # rows in class order
