"""End to end: real `dvc repro` and `dvc exp run` on a shrunk copy of the demo competition, in a
temporary copy of the repo that is its own git repo."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow
SHRUNK = {"img_size": 32, "epochs": 1, "folds": 2, "train_folds": [0, 1], "batch_size": 32,
          "workers": 0}
KEEP = {"train": 160, "validation": 40, "test": 60}  # first N image ids per split


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def shrink_competition(demo: Path) -> None:
    """Keep the first ids of each split, plus every entry with a broken mirror."""
    for split, keep in KEEP.items():
        path = demo / f"{split}.json"
        doc = json.loads(path.read_text())
        ids = {e["image_id"] for e in doc["images"] if e["image_id"] <= keep or len(e["url"]) > 1}
        doc["images"] = [e for e in doc["images"] if e["image_id"] in ids]
        if "annotations" in doc:
            doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
        path.write_text(json.dumps(doc))
    with open(demo / "test_labels.csv") as f:
        rows = [r for r in csv.DictReader(f) if int(r["id"]) in ids]
    with open(demo / "test_labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "label"])
        writer.writeheader()
        writer.writerows(rows)


def make_project(root: Path, shrunk: dict | None = None) -> Path:
    """A copy of the repo's tracked and untracked files in `root`, with the demo competition
    and the params shrunk (`shrunk` overrides SHRUNK), committed as a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    shrink_competition(root / "data" / "demo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(SHRUNK | (shrunk or {}))
    params["stats"]["workers"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "start"], root)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_repro_then_experiment_reruns_only_what_depends_on_lr(project):
    output = run(["dvc", "repro"], project)
    assert ran_stages(output) == {"download", "stats", "folds", "train@0", "train@1",
                                  "predict@0", "predict@1", "ensemble"}

    test_ids = [e["image_id"] for e in
                json.loads((project / "data/demo/test.json").read_text())["images"]]
    with open(project / "submissions/submission.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "predicted"]
    assert sorted(int(r[0]) for r in rows[1:]) == sorted(test_ids)  # every id exactly once
    assert {int(r[1]) for r in rows[1:]} <= set(range(1, 11))

    metrics = json.loads((project / "metrics/ensemble.json").read_text())
    for key in ("accuracy", "log_loss", "log_loss_clipped"):
        assert 0.0 <= metrics["oof"][key] < 20
    assert set(metrics) >= {"fold0", "fold1", "oof", "test", "submission"}
    assert metrics["submission"]["filled_missing_images"] == 2  # the demo's unreachable ones
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    report = json.loads((project / "data/download_report.json").read_text())
    assert report["failed"] == 6 and report["failure_reasons"] == {"not_found": 6}

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    output = run(["dvc", "exp", "run", "-S", "lr=0.01"], project)
    assert ran_stages(output) == {"train@0", "train@1", "predict@0", "predict@1", "ensemble"}
    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], project)
    assert "0.01" in shown and "oof.accuracy" in shown
