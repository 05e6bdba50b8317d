"""Every submission an ensemble writes, kept: a copy per successful run under
submissions/history/, named by time, experiment and OOF score, so the file behind any
leaderboard entry can be found again. Not a DVC out: nothing deletes it.

In: the submission just written, the history folder, the experiment's name (None outside
`dvc exp run`), the score's name and value. Out: the copy's path.
"""

from __future__ import annotations

import logging
import re
import shutil
from datetime import datetime
from pathlib import Path

from lib.common.fileio import atomic_path

log = logging.getLogger(__name__)


def history_name(*, experiment: str | None, score_name: str, score: float, when: datetime) -> str:
    label = re.sub(r"[^\w.-]+", "-", experiment) if experiment else "workspace"
    return f"{when:%Y%m%d-%H%M%S}_{label}_{score_name}{score:.4f}.csv"


def keep_copy(
    submission: Path,
    folder: Path,
    *,
    experiment: str | None,
    score_name: str,
    score: float,
    when: datetime | None = None,
) -> Path:
    target = folder / history_name(
        experiment=experiment, score_name=score_name, score=score, when=when or datetime.now()
    )
    with atomic_path(target, suffix=".csv") as tmp:
        shutil.copyfile(submission, tmp)
    return target


def keep_submission(
    submission: Path,
    folder: Path,
    *,
    experiment: str | None,
    headline: dict,
    metric: str = "accuracy",
) -> Path:
    """`keep_copy` named by the headline's OOF score in the competition's `metric`."""
    short = {"accuracy": "acc", "log_loss": "logloss"}.get(metric, metric)
    short += "_" if short[-1].isdigit() else ""  # map@3_0.8123, not map@30.8123
    kept = keep_copy(
        submission,
        folder,
        experiment=experiment,
        score_name=f"oof-{short}",
        score=headline["oof"][metric],
    )
    log.info("kept a copy of the submission: %s", kept)
    return kept
