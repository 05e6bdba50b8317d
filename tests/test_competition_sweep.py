"""End to end with real `dvc`: a sweep on a competition folder made by hand. Queued and `--temp`
experiments run in a temporary copy of what git and DVC track: untracked, the folder is missing
there and the experiment stops at its first stage with one line naming the fix, in the
command's output, in `dvc queue logs` and in `make leaderboard`; after `dvc add` and a commit,
a queued sweep of two succeeds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_image
from tests.helpers import commit, make_project, run, wait_for_queue

pytestmark = pytest.mark.slow
CLASSES = ["Ankle boot", "Sandal", "Sneaker"]  # folder names, one with a space


def hand_made_competition(folder: Path) -> None:
    """Class folders of tiny real images and a test folder (layout `folders`)."""
    for c, name in enumerate(CLASSES):
        for i in range(8):
            write_image(
                folder / "train" / name / f"{name[:2].lower()}{i}.png",
                size=(24, 24),
                seed=100 * c + i,
            )
    for i in range(6):
        write_image(folder / "test" / f"t{i}.png", size=(24, 24), seed=1000 + i)


FIX = (
    "error: data/shoes is not in the experiment's copy of the project (DVC copies only what "
    "git or DVC tracks): run `dvc add data/shoes` and commit data/shoes.dvc (or commit the "
    "folder to git), then run the experiment again"
)


def failing(args: list[str], project: Path) -> str:
    """The output of a command that must fail."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def the_one_line(output: str) -> str:
    """The stage's one `error:` line, DVC's bare [Errno 2] nowhere."""
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("error:")]
    assert len(lines) == 1 and "Errno" not in output, output[-3000:]
    return lines[0]


def leaderboard(project: Path) -> list[str]:
    board = run([sys.executable, "-m", "commands.leaderboard", "--width", "120"], project)
    return board.splitlines()


@pytest.mark.timeout(1800)
def test_a_queued_sweep_needs_the_folder_tracked_and_then_succeeds(tmp_path_factory):
    project = make_project(
        tmp_path_factory.mktemp("sweep"),
        {
            "competition": "data/shoes",
            "submission_format": "proba",
            "metric": "log_loss",
            "clip_low": 0.003,
            "img_size": 16,
            "batch_size": 8,
            "train_folds": [0],  # one model per experiment: the sweep is the point, not the folds
            "tta": "none",
        },
    )
    hand_made_competition(project / "data" / "shoes")  # made after the commit: untracked

    output = failing(["dvc", "exp", "run", "--temp", "-n", "temp", "-S", "lr=0.001"], project)
    assert the_one_line(output) == FIX
    assert "Running stage 'download'" not in output
    run(["dvc", "exp", "run", "--queue", "-n", "untracked", "-S", "lr=0.001"], project)
    run(["dvc", "queue", "start", "-j", "1"], project)
    assert "Failed" in wait_for_queue(project)
    assert the_one_line(run(["dvc", "queue", "logs", "untracked"], project)) == FIX
    board = leaderboard(project)
    failed = [line for line in board if line.startswith("failed: untracked:")]
    assert failed and "data/shoes is not in the experiment's copy of the project" in failed[0]
    assert "run `dvc add data/shoes` and commit data/shoes.dvc" in " ".join(board)
    run(["dvc", "queue", "remove", "--failed"], project)

    run(["dvc", "add", "data/shoes"], project)
    commit(project, "the shoes competition, tracked by DVC")
    for name, lr in (("lr-small", "0.001"), ("lr-large", "0.01")):
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"lr={lr}"], project)
    run(["dvc", "queue", "start", "-j", "1"], project)
    status = wait_for_queue(project)
    assert status.count("Success") == 2, status
    board = leaderboard(project)
    assert board[0] == "competition data/shoes: ranked by OOF log_loss (lower is better)"
    for name in ("lr-small", "lr-large"):
        row = next(line for line in board if re.match(rf" +\d+  {name} ", line))
        assert len(re.findall(r"\b\d\.\d{4}\b", row)) == 2, row  # its OOF accuracy and loss
    assert not any(line.startswith("failed:") for line in board)
