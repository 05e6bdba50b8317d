"""End to end: real `dvc repro` and `dvc exp run` on a shrunk copy of the demo competition, in a
temporary copy of the repo that is its own git repo. The tests start from copies of one project
reproduced once (conftest's `reproduced_demo`): the experiments, not the baseline, are what
each test is about."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, Reproduced
from tests.helpers import (  # noqa: F401 - make_project and commit: the other e2e tests' import
    commit,
    copy_project,
    make_project,
    ran_stages,
    run,
    wait_for_queue,
)
from tests.kaggle_notebook import assert_same_submission, run_notebook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(reproduced_demo: Reproduced, tmp_path_factory) -> Path:
    """This module's own copy of the reproduced demo, which its tests change in turn."""
    return copy_project(reproduced_demo.path, tmp_path_factory.mktemp("project"))


def in_terminal(args: list[str], cwd: Path, columns: int = 120) -> list[str]:
    """What a `columns`-wide terminal shows of a command's output: run under a pseudo-terminal
    of that width, with DVC's pager replaced by cat, each line cut at `columns` as `less -S`
    (DVC's default pager) shows it, colours removed."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_PAGER": "cat",
        "DVC_NO_ANALYTICS": "1",
        "COLUMNS": str(columns),
    }
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())
    return [line[:columns] for line in text.replace("\r", "").splitlines()]


# pytest-timeout counts fixture setup: the first test to take `reproduced_demo` pays its repro
@pytest.mark.timeout(2400)
def test_repro_then_experiments_rerun_only_what_depends_on_their_params(project, reproduced_demo):
    assert ran_stages(reproduced_demo.output) == {
        "check_competition",
        "download",
        "stats",
        "folds",
        "train@0",
        "train@1",
        "predict@0",
        "predict@1",
        "ensemble",
    }

    test_ids = [
        e["image_id"] for e in json.loads((project / "data/demo/test.json").read_text())["images"]
    ]
    with open(project / "submissions/submission.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "predicted"]
    assert sorted(int(r[0]) for r in rows[1:]) == sorted(test_ids)  # every id exactly once
    assert {int(r[1]) for r in rows[1:]} <= set(range(1, 11))

    detail = json.loads((project / "metrics/ensemble_detail.json").read_text())
    for key in ("accuracy", "log_loss", "log_loss_clipped"):
        assert 0.0 <= detail["oof"][key] < 20
    assert set(detail) >= {"fold0", "fold1", "oof", "test", "submission"}
    assert detail["submission"]["filled_missing_images"] == 2  # the demo's unreachable ones
    headline = json.loads((project / "metrics/ensemble.json").read_text())
    assert set(headline) == {"oof", "test"} and set(headline["oof"]) == {"accuracy", "log_loss"}
    assert 0.0 <= headline["test"]["accuracy"] <= 1.0
    report = json.loads((project / "data/download_report.json").read_text())
    assert report["failed"] == 6 and report["failure_reasons"] == {"not_found": 6}

    # the value form DVC writes for 1e-5 (`lr: 1e-05`) must reach training as a number
    output = run(["dvc", "exp", "run", "-n", "tiny-lr", "-S", "lr=1e-5"], project)
    assert ran_stages(output) == {"train@0", "train@1", "predict@0", "predict@1", "ensemble"}
    assert "lr: 1e-05" in (project / "params.yaml").read_text()
    run(["git", "checkout", "params.yaml"], project)
    output = run(["dvc", "exp", "run", "-n", "tta-flip6", "-S", "tta=flip6"], project)
    assert ran_stages(output) == {"predict@0", "predict@1", "ensemble"}  # train: run-cache

    shown = in_terminal(["dvc", "exp", "show"], project)
    header = next(line for line in shown if "Experiment" in line)
    assert re.search(
        r"Experiment +Created +oof\.accuracy +oof\.log_loss +test\.accuracy", header
    ), header
    for name in ("tiny-lr", "tta-flip6"):
        row = next(line for line in shown if f"[{name}]" in line)
        # its OOF accuracy and log loss (tiny-lr's may pass 1) and test accuracy
        assert "…" not in row and len(re.findall(r"\b\d\.\d{2,}\b", row)) >= 3, row

    board = run([sys.executable, "-m", "commands.leaderboard", "--width", "120"], project)
    lines = board.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert lines[0] == "competition data/demo: ranked by OOF accuracy (higher is better)"
    assert re.match(r" +#  experiment +oof acc +oof loss +test acc +changed params", lines[1])
    assert any("tiny-lr" in line and "lr=1e-05" in line for line in lines)
    assert any("tta-flip6" in line and line.endswith("tta=flip6") for line in lines)
    ranked = [
        float(re.findall(r"\s(\d\.\d{4})\s", line)[0])
        for line in lines[3:]
        if re.match(r" +\d+  ", line) and "workspace" not in line
    ]
    assert ranked == sorted(ranked, reverse=True)


def bundle_and_run_notebook(project: Path, kaggle: Path) -> tuple[dict, dict]:
    """`python -m commands.bundle`, then its notebook run as Kaggle would (tests.kaggle_notebook);
    the bundle's inference.json and where the notebook's code came from."""
    run([sys.executable, "-m", "commands.bundle"], project)
    config = json.loads((project / "kaggle/dataset/inference.json").read_text())
    return config, run_notebook(project, kaggle)


@pytest.mark.timeout(2400)  # retrains tiny-lr when run alone, on a machine that may be shared
def test_the_kaggle_notebook_reproduces_the_submission_and_a_blend_of_named_runs(project, tmp_path):
    """After the experiments above (the workspace holds tta-flip6): the run alone, then blended
    with tiny-lr (other weights) with fitted weights, in proba format."""
    if "tiny-lr" not in run(["dvc", "exp", "list", "--name-only"], project).split():
        run(["dvc", "exp", "run", "-n", "tiny-lr", "-S", "lr=1e-5"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["kaggle_username"] = "tester"  # read by the bundle only: no stage re-runs
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    config, probe = bundle_and_run_notebook(project, tmp_path / "alone")
    dataset = project / "kaggle" / "dataset"
    assert [m["name"] for m in config["members"]] == ["run"]
    # the checkpoints and nothing else of models/ (no resume files, no training logs)
    assert sorted(
        p.relative_to(dataset).as_posix() for p in (dataset / "models").rglob("*") if p.is_file()
    ) == ["models/run/fold0/model.pt", "models/run/fold1/model.pt"]
    assert json.loads((dataset / "dataset-metadata.json").read_text())["id"] == "tester/demo-models"
    kernel = json.loads((project / "kaggle/kernel/kernel-metadata.json").read_text())
    assert kernel["enable_internet"] is False and kernel["dataset_sources"] == [
        "tester/demo-models"
    ]
    assert probe["lib"] is False  # the project's checkout cannot be imported
    assert Path(probe["package"]).is_relative_to(tmp_path / "alone" / "input" / "demo-models")
    # "" is the kernel's own working folder, not this process's
    assert str(REPO) not in {str(Path(p).resolve()) for p in probe["path"] if p}
    assert_same_submission(
        project / "submissions/submission.csv", tmp_path / "alone" / "working" / "submission.csv"
    )

    run(
        [
            "dvc",
            "exp",
            "run",
            "-n",
            "blend",
            "-S",
            "ensemble_runs=[tiny-lr]",
            "-S",
            "ensemble_weights=auto",
            "-S",
            "submission_format=proba",
        ],
        project,
    )
    config, _ = bundle_and_run_notebook(project, tmp_path / "blend")
    assert [(m["name"], m["tta"]) for m in config["members"]] == [
        ("run", "flip6"),
        ("tiny-lr", "flip"),
    ]
    assert len(config["ensemble"]["weights"]) == 2
    assert (dataset / "models" / "1-tiny-lr" / "fold1" / "model.pt").is_file()
    assert_same_submission(
        project / "submissions/submission.csv", tmp_path / "blend" / "working" / "submission.csv"
    )


def test_speed_knobs_rerun_nothing_and_a_code_change_reruns_its_stages(project):
    run(["git", "reset", "-q", "--hard"], project)  # back to the baseline's params and lock
    run(["dvc", "checkout", "-f"], project)
    assert "up to date" in run(["dvc", "status"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(workers=1, compile=True)
    params["stats"]["workers"] = 2
    params["download"]["concurrency"] = 7
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "up to date" in run(["dvc", "status"], project)

    with open(project / "lib" / "prepare" / "folds.py", "a") as f:
        f.write("# a change to a module train, predict and ensemble run\n")
    changed = set(re.findall(r"^([\w@]+):", run(["dvc", "status"], project), re.M))
    assert changed == {"folds", "train@0", "train@1", "predict@0", "predict@1", "ensemble"}


@pytest.mark.timeout(2400)  # three experiments end to end, on a machine that may be shared
def test_queued_and_temp_experiments_run_only_what_changed(reproduced_demo, tmp_path_factory):
    project = copy_project(reproduced_demo.path, tmp_path_factory.mktemp("queue"))
    assert "failed to load" not in run(["dvc", "metrics", "diff"], project)
    good = (project / "submissions/submission.csv").read_bytes()

    for name, lr in (("q-small", "0.001"), ("q-large", "0.01")):
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"lr={lr}"], project)
    run(["dvc", "queue", "start", "-j", "1"], project)
    status = wait_for_queue(project)
    assert status.count("Success") == 2, status
    # the check of the competition folder runs in each copy (its out is in no cache), the
    # download it feeds does not
    changed = {"check_competition", "train@0", "train@1", "predict@0", "predict@1", "ensemble"}
    for name in ("q-small", "q-large"):
        logs = run(["dvc", "queue", "logs", name], project)
        assert ran_stages(logs) == changed, logs[-3000:]
    # a --temp copy too: the models come from the DVC cache, only the predictions run again
    output = run(["dvc", "exp", "run", "--temp", "-n", "t-flip6", "-S", "tta=flip6"], project)
    assert ran_stages(output) == {"check_competition", "predict@0", "predict@1", "ensemble"}

    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], project)
    assert "!" not in shown and all(name in shown for name in ("q-small", "q-large", "t-flip6"))
    assert "failed to load" not in run(["dvc", "metrics", "diff"], project)
    # each experiment's submission is kept in the project, not in its temporary copy
    kept = [p.name for p in (project / "submissions/history").iterdir()]
    assert {name for name in ("q-small", "q-large", "t-flip6") if any(name in k for k in kept)} == {
        "q-small",
        "q-large",
        "t-flip6",
    }
    assert (project / "submissions/submission.csv").read_bytes() == good

    # a mistyped param fails the ensemble under DVC too, and the last submission stays
    done = subprocess.run(
        ["dvc", "exp", "run", "-S", "clip_high=0.3"],
        cwd=project,
        env=os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "clip_high = 0.3 is not allowed" in done.stderr
    assert (project / "submissions/submission.csv").read_bytes() == good
