"""Past one machine, end to end with real dvc on a shrunk demo (see README, "Several
machines" and "Queued sweeps"):
- two clones sharing a local-directory DVC remote and its run-cache: A trains fold 0 and
  pushes; B trains fold 1, then `dvc repro --pull` takes fold 0 from the run-cache (no
  retraining) and ensembles both folds;
- a queued sweep (`dvc exp run --queue -S 'lr=0.1,0.03'`, `dvc queue start`) on a copy of the
  reproduced demo (conftest's `reproduced_demo`), whose two experiments `dvc exp show` then
  lists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import copy_project, make_project, ran_stages, run, wait_for_queue

pytestmark = pytest.mark.slow


def test_two_clones_share_the_remote_and_the_run_cache(tmp_path):
    a = make_project(tmp_path / "a")
    run(["git", "rm", "-q", "--cached", "dvc.lock"], a)  # the repo's lock is for full params
    (a / "dvc.lock").unlink()
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], a)
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "shared remote"], a)
    b = tmp_path / "b"
    run(["git", "clone", "-q", str(a), str(b)], tmp_path)

    # Machine A: fold 0, then push its outs and its run-cache.
    output = run(["dvc", "repro", "train@0"], a)
    assert ran_stages(output) == {"check_competition", "download", "stats", "folds", "train@0"}
    run(["dvc", "push", "--run-cache"], a)

    # Machine B (its own clone, none of A's commits): fold 1.
    output = run(["dvc", "repro", "train@1"], b)
    assert ran_stages(output) == {"check_competition", "download", "stats", "folds", "train@1"}
    # Then fold 0 from the shared run-cache (--pull: the runs, then the outs of those it uses),
    # and the ensemble of both folds.
    output = run(["dvc", "repro", "--pull"], b)
    assert "train@0" not in ran_stages(output), output
    assert "Stage 'train@0' is cached - skipping run, checking out outputs" in output
    assert ran_stages(output) >= {"predict@0", "predict@1", "ensemble"}
    model = "models/fold0/model.pt"
    assert (a / model).read_bytes() == (b / model).read_bytes()
    assert (b / "submissions/submission.csv").is_file()
    assert "train@0" not in ran_stages(run(["dvc", "repro"], b))  # and everything is up to date
    assert "Data and pipelines are up to date" in run(["dvc", "status"], b)


@pytest.mark.timeout(2400)  # run alone, it pays the `reproduced_demo` repro (fixture setup)
def test_a_queued_sweep_runs_both_experiments(reproduced_demo, tmp_path):
    root = copy_project(reproduced_demo.path, tmp_path / "sweep")
    # Up to train@0 only, to keep the test short: the sweep machinery is the same.
    output = run(["dvc", "exp", "run", "--queue", "train@0", "-S", "lr=0.1,0.03"], root)
    assert output.count("Queued experiment") == 2, output
    run(["dvc", "queue", "start", "-j", "2"], root)
    status = wait_for_queue(root, timeout_s=900)
    assert status.count("Success") == 2 and "Failed" not in status, status
    # train's per-epoch metrics are an out, not a `dvc exp show` column: read each experiment's
    # from the DVC cache, as `dvc exp show --json` names its commit
    from dvc.api import DVCFileSystem

    shown = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "exp", "show", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = json.loads(shown)
    done = {}
    for baseline in rows:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                lr = rev["data"]["params"]["params.yaml"]["data"]["lr"]
                fs = DVCFileSystem(str(root), rev=rev["rev"])
                done[str(lr)] = json.loads(fs.read_text("models/fold0/live/metrics.json"))
    assert set(done) == {"0.1", "0.03"}, done  # the two experiments, with their metrics
    assert all(0.0 <= metrics["val_acc"] <= 1.0 for metrics in done.values())
