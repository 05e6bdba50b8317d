"""Resumable training (lib.train.resume): a train stage killed after an epoch and started again
ends with the same weights and metrics as a run that was never interrupted; a resume file that
is damaged, foreign or from other params is never trusted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lib.common.fileio import write_json
from lib.prepare.folds import assign_folds, scan_labelled
from lib.train.loop import fit
from lib.train.model import create_model
from lib.train.resume import RESUME_FIELDS, read_resume, write_resume
from tests.conftest import REPO, default_params, train_config, write_image
from tests.helpers import call_stage
from tests.train.test_loop import loaders

SHRUNK = {
    "arch": "resnet10t",
    "pretrained": "none",
    "img_size": 32,
    "epochs": 4,
    "batch_size": 8,
    "workers": 0,
    "mixup": 0.3,
    "aug": "medium",
    "ema": 0.9,
}


def make_project(root: Path) -> Path:
    images = root / "data" / "images"
    for label in (1, 2, 3):
        for i in range(24):
            write_image(
                images / "train" / f"{label}" / f"{label * 100 + i}.png",
                size=(32, 32),
                seed=label * 1000 + i,
            )
    folds = assign_folds(scan_labelled(images, ["train"]), folds=2, seed=0)
    folds.to_csv(root / "data" / "folds.csv", index=False)
    write_json(root / "data" / "stats.json", {"mean": [0.5] * 3, "std": [0.29] * 3})
    # the demo is the competition the checks before training read
    params = default_params() | SHRUNK | {"competition": str(REPO / "data" / "demo")}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def git_repo(root: Path) -> None:
    """DVCLive needs a git repo with a commit."""
    if not (root / ".git").exists():
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], cwd=root, check=True)


def start_training(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    git_repo(root)
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train", "--fold", "0"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_killed_run_resumes_and_matches_a_straight_run(tmp_path):
    straight = make_project(tmp_path / "straight")
    finish(start_training(straight))

    killed = make_project(tmp_path / "killed")
    process = start_training(killed)
    resume = killed / "models" / "fold0" / "resume.pt"
    deadline = time.monotonic() + 240
    while not resume.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "models" / "fold0" / "model.pt").exists(), "finished before the kill"
    done_epochs = torch.load(resume, weights_only=True)["epoch"]
    assert 1 <= done_epochs < SHRUNK["epochs"]

    output = finish(start_training(killed))
    assert f"resuming from models/fold0/resume.pt after epoch {done_epochs}" in output
    assert not resume.exists()  # removed once the model is saved

    def saved(root):
        checkpoint = torch.load(root / "models/fold0/model.pt", weights_only=True)
        metrics = json.loads((root / "models/fold0/live/metrics.json").read_text())
        return checkpoint["state_dict"], metrics

    (a_weights, a_metrics), (b_weights, b_metrics) = saved(straight), saved(killed)
    assert a_metrics["step"] == b_metrics["step"] == SHRUNK["epochs"] - 1
    for name in ("val_loss", "val_acc", "train_loss", "train_acc"):
        assert a_metrics[name] == b_metrics[name]
    assert all(torch.equal(a_weights[k], b_weights[k]) for k in a_weights)


def test_a_resume_file_from_other_params_is_ignored(tmp_path):
    root = make_project(tmp_path / "p")
    params = yaml.safe_load((root / "params.yaml").read_text()) | {"epochs": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "models" / "fold0").mkdir(parents=True)
    torch.save({"key": "other", "epoch": 2}, root / "models" / "fold0" / "resume.pt")
    git_repo(root)
    done = call_stage("train", root, "--fold", "0")  # in this process: no interpreter start
    assert done.returncode == 0, done.stderr[-3000:]
    assert "from other params or data: starting afresh" in done.stderr
    assert (root / "models" / "fold0" / "model.pt").is_file()
    assert not (root / "models" / "fold0" / "resume.pt").exists()


@pytest.mark.slow
def test_ctrl_c_stops_training_in_one_line_that_says_how_to_resume(tmp_path):
    root = make_project(tmp_path / "p")
    process = start_training(root)
    resume = root / "models" / "fold0" / "resume.pt"
    deadline = time.monotonic() + 240
    while not resume.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    assert "Traceback" not in output
    epoch = torch.load(resume, weights_only=True)["epoch"]
    assert output.strip().splitlines()[-1] == (
        f"interrupted: training of fold 0 stopped; models/fold0/resume.pt holds epoch {epoch}: "
        "run `dvc repro train@0` (or this command) again to resume from it"
    )
    assert f"resuming from models/fold0/resume.pt after epoch {epoch}" in finish(
        start_training(root)
    )


def test_a_whole_file_of_the_same_run_is_read_back(tmp_path):
    path = tmp_path / "resume.pt"
    state = {name: None for name in RESUME_FIELDS} | {"key": "k", "epoch": 3}
    write_resume(path, state)
    assert read_resume(path, "k", set_aside=True)["epoch"] == 3
    assert read_resume(path, "other", set_aside=True) is None  # other params: ignored, kept
    assert path.is_file() and not list(tmp_path.glob("*.corrupt*"))


def test_one_process_of_several_warns_without_renaming(tmp_path, caplog):
    path = tmp_path / "resume.pt"
    path.write_bytes(b"not a torch file")
    with caplog.at_level("WARNING", logger="lib.train.resume"):
        assert read_resume(path, "k", set_aside=False) is None
    assert path.read_bytes() == b"not a torch file" and not list(tmp_path.glob("*.corrupt*"))
    assert "training starts over" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_resume_file_is_set_aside_and_training_starts_over(
    image_tree, tmp_path, damage, caplog
):
    train, val = loaders(image_tree)
    resume = tmp_path / "resume.pt"
    config = train_config(epochs=1, lr=0.01)

    def run():
        model = create_model("resnet10t", num_classes=3, pretrained="none")
        return fit(
            model,
            train_loader=train,
            val_loader=val,
            device=torch.device("cpu"),
            fold=0,
            num_classes=3,
            config=config,
            resume_path=resume,
            resume_key="k",
        )

    run()
    whole = resume.read_bytes()
    if damage == "truncated":
        resume.write_bytes(whole[: len(whole) // 3])
    else:
        torch.save({"key": "k", "epoch": 1}, resume)
    damaged = resume.read_bytes()
    (tmp_path / "resume.pt.corrupt").write_bytes(b"an earlier one, kept too")
    with caplog.at_level("WARNING", logger="lib.train.resume"):
        result = run()
    assert [r.epoch for r in result.history] == [1]  # trained, not resumed
    assert (tmp_path / "resume.pt.corrupt.1").read_bytes() == damaged
    assert (tmp_path / "resume.pt.corrupt").read_bytes() == b"an earlier one, kept too"
    assert torch.load(resume, weights_only=True)["epoch"] == 1  # a fresh one written
    [warning] = [
        r.getMessage()
        for r in caplog.records
        if r.name == "lib.train.resume" and r.levelname == "WARNING"
    ]
    assert warning.startswith(f"{resume}: not a ") and "training starts over" in warning
    assert warning.endswith(f"(the file is kept as {tmp_path / 'resume.pt.corrupt.1'})")
