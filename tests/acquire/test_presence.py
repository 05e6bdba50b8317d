"""The competition folder in the workspace DVC runs in: missing in an experiment's copy is one
line naming the fix; untracked in the project, a warning; tracked by git or DVC, nothing."""

from __future__ import annotations

import pytest

from lib.acquire.presence import check_experiment_copy, untracked_warning
from lib.common.errors import UserError
from tests.conftest import write_image
from tests.helpers import call_stage, one_error_line, run


def git_project(root):
    root.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], root)
    write_image(root / "data" / "shoes" / "train" / "Sandal" / "a.png")
    return root


def test_missing_in_an_experiment_copy_names_the_fix(tmp_path):
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "standalone" / "tmpab12"
    copy.mkdir(parents=True)
    with pytest.raises(UserError) as caught:
        check_experiment_copy("data/shoes", copy)
    assert str(caught.value) == (
        "data/shoes is not in the experiment's copy of the project (DVC copies only what git "
        "or DVC tracks): run `dvc add data/shoes` and commit data/shoes.dvc (or commit the "
        "folder to git), then run the experiment again"
    )


def test_only_an_experiment_copy_is_told_to_track_the_folder(tmp_path):
    check_experiment_copy("data/shoes", tmp_path)  # the project: params.yaml's rule says it
    copy = git_project(tmp_path / ".dvc" / "tmp" / "exps" / "tmpcd34")
    check_experiment_copy("data/shoes", copy)  # the folder is there


def test_untracked_warns_and_tracked_by_git_or_dvc_does_not(tmp_path):
    root = git_project(tmp_path)
    warning = untracked_warning("data/shoes", root)
    assert warning and "tracked by neither git nor DVC" in warning
    assert "`dvc add data/shoes`" in warning

    (root / "data" / "shoes.dvc").write_text("outs:\n- path: shoes\n")
    assert untracked_warning("data/shoes", root) is None
    (root / "data" / "shoes.dvc").unlink()
    (root / "data.dvc").write_text("outs:\n- path: data\n")  # a folder above it, tracked
    assert untracked_warning("data/shoes", root) is None
    (root / "data.dvc").unlink()

    run(["git", "add", "data/shoes"], root)
    assert untracked_warning("data/shoes", root) is None


def test_the_stage_writes_the_folder_name_alone_or_stops_with_one_line(tmp_path):
    root = git_project(tmp_path)
    (root / "params.yaml").write_text("competition: data/shoes\n")
    done = call_stage("check_competition", root)
    assert done.returncode == 0, done.stderr
    assert "tracked by neither git nor DVC" in done.stderr  # a warning: this run goes on
    assert (root / "data" / "competition_found.txt").read_text() == "data/shoes\n"

    (root / "params.yaml").write_text("competition: data/boots\n")  # the param's own rule
    line = one_error_line(call_stage("check_competition", root))
    assert line.startswith("error: params.yaml: competition = 'data/boots' is not allowed")

    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpef56"
    copy.mkdir(parents=True)
    (copy / "params.yaml").write_text("competition: data/shoes\n")
    line = one_error_line(call_stage("check_competition", copy))
    assert line.startswith("error: data/shoes is not in the experiment's copy of the project")
    assert not (copy / "data" / "competition_found.txt").exists()
