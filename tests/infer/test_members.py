"""Ensemble members by folder, DVC experiment name and git revision, in a real git + DVC repo
whose stage writes fake predictions from a param."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from lib.common.errors import UserError
from lib.infer.members import EXPERIMENT, FOLDER, REVISION, gather_runs, load_members
from lib.infer.predictions import Predictions, save_predictions
from lib.infer.runs import RunPredictions
from tests import helpers
from tests.conftest import REPO
from tests.infer.test_blending import write_run

# the tests of `project` read members from one real git + DVC project (`dvc repro`, `dvc exp
# run`): about a minute and a half, so in the end-to-end tier

# The stage: fold 0's OOF and test predictions of 3 classes, drawn from the param `seed`.
PREDICT = textwrap.dedent("""\
    from pathlib import Path

    import numpy as np
    import yaml

    seed = yaml.safe_load(Path("params.yaml").read_text())["seed"]
    rng = np.random.default_rng(seed)
    out = Path("predictions/fold0")
    out.mkdir(parents=True, exist_ok=True)
    for split, ids in (("oof", np.arange(8)), ("test", np.arange(100, 104))):
        probs = rng.dirichlet(np.ones(3), len(ids)).astype(np.float32)
        extra = {"splits": np.array(["train"] * len(ids)),
                 "targets": np.arange(len(ids)) % 3 + 1} if split == "oof" else {}
        np.savez(out / f"{split}.npz", probs=probs, image_ids=ids, classes=np.array([1, 2, 3]),
                 **extra)
""")
# A stage that loads the members while `dvc exp run` holds the repo, as the ensemble stage does.
BLEND = textwrap.dedent("""\
    import json
    import os
    from pathlib import Path

    import yaml

    from lib.infer.runs import RunPredictions
    from lib.infer.members import load_members

    runs = yaml.safe_load(Path("params.yaml").read_text())["ensemble_runs"]
    members = load_members(runs, this_run=RunPredictions(Path("predictions")),
                           root=Path(os.environ.get("DVC_ROOT", ".")))
    Path("members.json").write_text(json.dumps({m.run.name: m.source.commit for m in members}))
""")
DVC_YAML = """\
stages:
  predict:
    cmd: python predict.py
    deps: [predict.py]
    params: [seed]
    outs: [predictions/fold0]
  blend:
    cmd: python blend.py
    deps: [blend.py, predictions]
    params: [ensemble_runs]
    outs: [members.json]
"""


def run(args: list[str], cwd: Path) -> str:
    """A git or dvc command whose stage scripts import this repository's lib."""
    return helpers.run(args, cwd, env={"PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """Tag v0: predictions of seed 0, committed. Experiment exp-a: seed 1, its outputs left in
    the workspace as `dvc exp run` leaves them."""
    root = tmp_path_factory.mktemp("dvc-project")
    (root / "predict.py").write_text(PREDICT)
    (root / "blend.py").write_text(BLEND)
    (root / "params.yaml").write_text("seed: 0\nensemble_runs: []\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "repro", "-q"], root)
    seed0 = RunPredictions(root / "predictions").oof.probs
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "seed 0"], root)
    run(["git", "tag", "v0"], root)
    run(["dvc", "exp", "run", "-q", "-n", "exp-a", "-S", "seed=1"], root)
    return {"root": root, "seed0": seed0, "this": RunPredictions(root / "predictions")}


def rev_parse(root: Path, rev: str) -> str:
    return run(["git", "rev-parse", rev], root).strip()


def experiment_ref(root: Path, name: str) -> str:
    """The ref DVC keeps an experiment of HEAD under."""
    head = rev_parse(root, "HEAD")
    return f"refs/exps/{head[:2]}/{head[2:]}/{name}"


@pytest.mark.slow
def test_members_by_experiment_name_and_git_revision(project):
    root, this = project["root"], project["this"]
    exp_a, v0 = load_members(["exp-a", "v0"], this_run=this, root=root)
    assert (exp_a.source.kind, exp_a.source.commit) == (
        EXPERIMENT,
        rev_parse(root, experiment_ref(root, "exp-a")),
    )
    assert exp_a.run.name == "exp-a" and exp_a.run.folds == [0]
    np.testing.assert_array_equal(exp_a.run.oof.probs, this.oof.probs)  # seed 1, as run
    np.testing.assert_array_equal(exp_a.run.test.probs, this.test.probs)
    assert (v0.source.kind, v0.source.commit) == (REVISION, rev_parse(root, "v0"))
    np.testing.assert_array_equal(v0.run.oof.probs, project["seed0"])
    assert not exp_a.run.folder.exists()  # the temporary copy is gone once loaded


@pytest.mark.slow
def test_dvc_exp_run_ensembles_experiments_by_name(project, tmp_path):
    root = copy_project(project, tmp_path)
    run(["dvc", "exp", "run", "-q", "-n", "blend-a", "-S", "ensemble_runs=[exp-a,v0]"], root)
    assert json.loads((root / "members.json").read_text()) == {
        "exp-a": rev_parse(root, experiment_ref(root, "exp-a")),
        "v0": rev_parse(root, "v0"),
    }


@pytest.mark.slow
def test_a_folder_entry_reads_that_folder(project, tmp_path):
    copy = shutil.copytree(project["root"] / "predictions", tmp_path / "runs" / "b3")
    [member] = load_members([str(copy)], this_run=project["this"], root=project["root"])
    assert (member.source.kind, member.source.commit, member.run.name) == (FOLDER, None, str(copy))


@pytest.mark.slow
def test_an_unknown_name_is_one_line_naming_it(project):
    with pytest.raises(UserError) as error:
        load_members(["exp-zz"], this_run=project["this"], root=project["root"])
    message = str(error.value)
    assert "'exp-zz' is not a folder, a DVC experiment or a git revision" in message
    assert "dvc exp list --all-commits" in message and "\n" not in message


@pytest.mark.slow
def test_outside_git_an_entry_must_be_a_folder(project, tmp_path):
    with pytest.raises(UserError, match="is not a git repository"):
        load_members(["exp-a"], this_run=project["this"], root=tmp_path)


def copy_project(project: dict, tmp_path: Path) -> Path:
    return Path(shutil.copytree(project["root"], tmp_path / "copy", symlinks=True))


def cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def fold0_dir_md5(root: Path, commit: str) -> str:
    lock = yaml.safe_load(run(["git", "show", f"{commit}:dvc.lock"], root))
    return lock["stages"]["predict"]["outs"][0]["md5"]


@pytest.mark.slow
def test_an_experiment_outside_the_cache_says_how_to_pull_it(project, tmp_path):
    root = copy_project(project, tmp_path)
    run(["git", "remote", "add", "origin", str(tmp_path / "elsewhere.git")], root)
    commit = rev_parse(root, experiment_ref(root, "exp-a"))
    cache_object(root, fold0_dir_md5(root, commit)).unlink()  # its list of files
    with pytest.raises(UserError) as error:
        load_members(["exp-a"], this_run=project["this"], root=root)
    assert str(error.value) == (
        f"exp-a (experiment {commit[:7]}): predictions/fold0 is not in the local DVC cache; "
        "bring it with `dvc exp pull origin exp-a` (from the DVC remote it was pushed to)"
    )


@pytest.mark.slow
def test_a_revision_outside_the_cache_says_how_to_fetch_it(project, tmp_path):
    root = copy_project(project, tmp_path)
    commit = rev_parse(root, "v0")
    listing = json.loads(cache_object(root, fold0_dir_md5(root, commit)).read_text())
    oof = next(entry["md5"] for entry in listing if entry["relpath"] == "oof.npz")
    cache_object(root, oof).unlink()
    with pytest.raises(UserError) as error:
        load_members(["v0"], this_run=project["this"], root=root)
    assert str(error.value) == (
        f"v0 (revision {commit[:7]}): predictions/fold0/oof.npz is not in the local DVC cache; "
        "bring it with `dvc fetch --all-commits` (from the DVC remote it was pushed to)"
    )


@pytest.mark.slow
def test_a_revision_without_predictions_is_one_line(project, tmp_path):
    root = copy_project(project, tmp_path)
    run(["git", "rm", "-q", "--cached", "dvc.lock"], root)
    run(["git", "commit", "-qm", "no outputs"], root)
    with pytest.raises(
        UserError,
        match=r"^nolock \(revision [0-9a-f]{7}\): no predictions/fold<k>/"
        r"oof.npz at that commit \(did its predict stage run",
    ):
        run(["git", "branch", "nolock"], root)
        load_members(["nolock"], this_run=project["this"], root=root)


@pytest.mark.slow
def test_an_experiment_name_prefers_the_one_on_head_and_refuses_ambiguity(project, tmp_path):
    root = copy_project(project, tmp_path)
    v0 = rev_parse(root, "v0")
    for baseline in ("1" * 40, "2" * 40):  # the same names on two other baselines
        for name in ("exp-a", "exp-b"):
            run(["git", "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}", v0], root)
    [member] = load_members(["exp-a"], this_run=project["this"], root=root)
    assert member.source.commit == rev_parse(root, experiment_ref(root, "exp-a"))
    with pytest.raises(
        UserError,
        match=r"'exp-b' exists on several baselines \(1111111, "
        r"2222222\), none of them HEAD",
    ):
        load_members(["exp-b"], this_run=project["this"], root=root)


@pytest.mark.slow
def test_a_member_with_other_images_or_classes_is_named(project, tmp_path):
    this = project["this"]
    fold = Predictions(
        this.oof.probs,
        (this.oof.image_ids.astype(int) + 50),
        this.oof.classes,
        splits=this.oof.splits,
        targets=this.oof.targets,
    )
    save_predictions(tmp_path / "shifted" / "fold0" / "oof.npz", fold)
    save_predictions(tmp_path / "shifted" / "fold0" / "test.npz", this.test)
    with pytest.raises(UserError, match=r"shifted: predicted other images than .*predictions"):
        load_members([str(tmp_path / "shifted")], this_run=this, root=project["root"])
    save_predictions(tmp_path / "relabelled" / "fold0" / "oof.npz", this.oof)
    save_predictions(
        tmp_path / "relabelled" / "fold0" / "test.npz",
        Predictions(this.test.probs, this.test.image_ids, np.array([1, 2, 4])),
    )
    with pytest.raises(UserError, match=r"relabelled: different class list"):
        load_members([str(tmp_path / "relabelled")], this_run=this, root=project["root"])


def test_gather_runs_puts_this_run_first_then_each_member(tmp_path):
    this = write_run(tmp_path / "predictions", right=0.8)
    other = write_run(tmp_path / "runs" / "b3", right=0.7)
    runs, commits = gather_runs(this, folds=[0, 1], entries=[str(other)], root=tmp_path, how="mean")
    assert [r.name for r in runs] == [str(this), str(other)]
    assert commits == {str(other): None}  # a folder, not a revision
    assert gather_runs(this, folds=[0, 1], entries=[], root=tmp_path, how="mean")[1] == {}
