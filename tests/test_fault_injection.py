"""Kill a stage at a random point (SIGKILL: no cleanup runs), run it again, and get exactly what
an uninterrupted run gets: nothing lost, no temp file left behind. Several seeds pick the
moments."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import run
from tests.test_pipeline import make_project

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)
# stage -> the outs compared after the re-run
STAGES = {
    "download": ["data/images"],
    "train": ["models/fold0/model.pt"],
    "predict": ["predictions/fold0"],
    "ensemble": ["submissions/submission.csv", "metrics/ensemble.json"],
}
COMMANDS = {
    "download": ["stages.download"],
    "train": ["stages.train", "--fold", "0"],
    "predict": ["stages.predict", "--fold", "0"],
    "ensemble": ["stages.ensemble"],
}


def start(stage: str, project: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        [sys.executable, "-m", *COMMANDS[stage]],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def finish(stage: str, project: Path) -> float:
    """Run the stage to the end; its wall time."""
    began = time.monotonic()
    assert start(stage, project).wait(timeout=900) == 0, f"{stage} failed on its re-run"
    return time.monotonic() - began


def fingerprint(project: Path, out: str) -> dict[str, str]:
    """What an out holds: each file's bytes, or for a checkpoint its tensors' bytes (the zip
    container may differ between two saves of the same weights)."""
    root = project / out
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found = {}
    for path in files:
        if path.suffix == ".pt":
            state = torch.load(path, weights_only=True)["state_dict"]
            digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in state.values()))
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                digest = hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays)))
        else:
            digest = hashlib.sha256(path.read_bytes())
        found[path.relative_to(project).as_posix()] = digest.hexdigest()
    return found


def empty_images(project: Path) -> None:
    for path in sorted((project / "data/images").rglob("*"), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()


def leftovers(project: Path) -> list[str]:
    return [
        p.relative_to(project).as_posix()
        for folder in ("data", "models", "predictions", "submissions", "metrics")
        for p in (project / folder).rglob(".tmp*")
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A project reproduced once without interruption: its outs and each stage's run time."""
    project = make_project(tmp_path_factory.mktemp("faults"), {"train_folds": [0], "epochs": 2})
    run(["dvc", "repro"], project)
    empty_images(project)
    times = {stage: finish(stage, project) for stage in STAGES}  # a second, timed run
    outs = {
        stage: {k: v for out in outs for k, v in fingerprint(project, out).items()}
        for stage, outs in STAGES.items()
    }
    return project, outs, times


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_killed_stage_run_again_gets_the_same_outputs(reference, stage, seed):
    project, outs, times = reference
    if stage == "download":  # nothing to fetch again otherwise
        empty_images(project)
    process = start(stage, project)
    time.sleep(random.Random(f"{stage}{seed}").uniform(0.2, 0.9) * times[stage])
    process.send_signal(signal.SIGKILL)
    process.wait()
    finish(stage, project)
    again = {k: v for out in STAGES[stage] for k, v in fingerprint(project, out).items()}
    assert again == outs[stage]
    assert leftovers(project) == []
