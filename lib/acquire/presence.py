"""Is the competition folder in the workspace DVC runs in, and will experiments see it?

DVC runs a queued or `--temp` experiment in a temporary copy of the project (under
`.dvc/tmp/exps/`) that holds only what git and DVC track. A competition folder that neither
tracks is missing there, and DVC stops while hashing the download stage's deps, before any
stage command runs, with a bare `[Errno 2] No such file or directory`. The pipeline's first
stage (stages.check_competition) calls `check_experiment_copy`, so that the experiment stops
with one line naming the fix instead.

In: the competition folder (relative to the workspace, as params.yaml gives it) and the
workspace. Out: a UserError naming the fix when the workspace is an experiment's copy without
the folder; a warning line when the folder is tracked by neither git nor DVC (this workspace
runs, experiments would not).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lib.common.errors import UserError

EXPERIMENT_COPY = os.path.join(".dvc", "tmp", "exps")  # where DVC makes an experiment's copy


def fix(folder: str) -> str:
    return (
        f"run `dvc add {folder}` and commit {folder}.dvc (or commit the folder to git), "
        "then run the experiment again"
    )


def check_experiment_copy(folder: str, workspace: Path | None = None) -> None:
    """A UserError naming the fix when `workspace` (the current directory by default) is an
    experiment's copy of the project and `folder` is not in it."""
    workspace = Path.cwd() if workspace is None else Path(workspace)
    if EXPERIMENT_COPY in str(workspace.resolve()) and not (workspace / folder).exists():
        raise UserError(
            f"{folder} is not in the experiment's copy of the project (DVC copies only "
            f"what git or DVC tracks): {fix(folder)}"
        )


def untracked_warning(folder: str, workspace: Path | None = None) -> str | None:
    """A warning when `folder` is tracked by neither git nor DVC: this workspace can read it,
    an experiment's copy would not have it."""
    workspace = Path.cwd() if workspace is None else Path(workspace)
    if tracked_by_dvc(workspace, folder) or tracked_by_git(workspace, folder):
        return None
    return (
        f"{folder} is tracked by neither git nor DVC: this run can read it, but a queued or "
        f"`--temp` experiment cannot; {fix(folder)}"
    )


def tracked_by_dvc(workspace: Path, folder: str) -> bool:
    """A `.dvc` file for the folder or a folder above it, inside the workspace."""
    path = (workspace / folder).resolve()
    root = workspace.resolve()
    while path != root and path.is_relative_to(root):
        if path.with_name(path.name + ".dvc").is_file():
            return True
        path = path.parent
    return False


def tracked_by_git(workspace: Path, folder: str) -> bool:
    """Git tracks a file under the folder (False where git cannot tell: no git, no repo)."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--", folder],
            cwd=workspace,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout)
