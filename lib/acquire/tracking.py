"""Track a competition folder with DVC, so that experiments see it.

DVC runs a queued or `--temp` experiment in a temporary copy of the project that holds only what
git and DVC track: a competition folder neither tracks is missing there, and every such
experiment fails. In: a folder inside the DVC project (a git repo). Out: `<folder>.dvc`, which
with the `.gitignore` beside it is staged (`git add`) for the user's next commit; or a
UserError naming the command that failed and what to do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lib.common.errors import UserError

DVC = (sys.executable, "-m", "dvc")  # the dvc of this environment, whatever PATH holds


def track_folder(folder: Path, *, dvc: tuple[str, ...] = DVC) -> Path:
    """`dvc add folder`, then `git add` its .dvc file and .gitignore; returns the .dvc file."""
    folder = Path(folder)
    dvc_file = folder.with_name(folder.name + ".dvc")
    _run([*dvc, "add", str(folder)], what=f"dvc add {folder}")
    staged = [str(p) for p in (dvc_file, folder.parent / ".gitignore") if p.is_file()]
    _run(["git", "add", *staged], what=f"git add {' '.join(staged)}")
    return dvc_file


def _run(command: list[str], *, what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise UserError(
            f"`{what}` failed (exit {done.returncode}): "
            f"{said[-1].strip() if said else 'no message'}; the folder is there, "
            "untracked: run the command yourself in the project (a git repo with "
            "`dvc init` done), then commit"
        )
