"""check_competition: the competition folder is in the workspace DVC runs in -> the folder's
name in data/competition_found.txt (an uncached, git-ignored out).

The pipeline's first stage. DVC hashes a stage's deps before its command runs, so a competition
folder missing from a queued or `--temp` experiment's copy of the project would stop the
download stage with a bare `[Errno 2]`; this stage has no dep on the folder and stops first,
with one line naming the fix (lib.acquire.presence). Its out is in neither git nor the DVC
cache: every experiment copy runs it again (a fraction of a second), the main workspace only
when `competition` changes. The out holds the folder's name alone, so the download stage, which
depends on it, re-runs only when the competition does."""

import logging
from pathlib import Path

from lib.acquire.presence import check_experiment_copy, untracked_warning
from lib.common.fileio import write_text
from lib.common.params import load_params, read_params_file
from stages.common import run

COMPETITION_FOUND = Path("data/competition_found.txt")  # the out, as dvc.yaml declares it
PARAMS = ["competition"]
SPEED_PARAMS: list[str] = []
log = logging.getLogger("check_competition")


def main() -> None:
    named = read_params_file().get("competition")
    if isinstance(named, str):  # before the param's rule, which would say only "not a folder"
        check_experiment_copy(named)
    folder = load_params(PARAMS)["competition"]
    warning = untracked_warning(folder)
    if warning:
        log.warning(warning)
    COMPETITION_FOUND.parent.mkdir(parents=True, exist_ok=True)
    write_text(COMPETITION_FOUND, f"{folder}\n")


if __name__ == "__main__":
    run(main)
