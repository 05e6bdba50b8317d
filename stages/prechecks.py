"""Before a stage's work: what would fail the ensemble, checked now (lib.infer.prechecks).

In: params.yaml (PARAMS) and the competition, read again unless the stage has read it.
Out: nothing, or the ensemble's UserError. The download, folds, train and predict stages call
`check_before_work()` first; they read PARAMS only for it, so those keys are no DVC params of
theirs (changing one re-runs only the ensemble), and this module is no code dep of theirs
(lib.common.code_deps.NOT_DEPS): it can stop a stage, never change what the stage writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from lib.acquire.layouts import Competition, read_competition
from lib.common.params import load_params
from lib.infer.prechecks import Setup, check_test_split, run_prechecks

# What the competition's submission is checked against (commands.check_submission reads these too)
SUBMISSION_PARAMS = [
    "competition",
    "competition_format",
    "id_column",
    "label_column",
    "label_pattern",
    "test_share",
    "classes_file",
    "sample_submission",
    "submission_format",
    "metric",
]
PARAMS = [*SUBMISSION_PARAMS, "ensemble_runs", "ensemble_weights"]


def check_before_work(competition: Competition | None = None, *, needs_test: bool = True) -> None:
    """`competition`: the stage's own reading of it, else it is read here. `needs_test`: False
    for the download, which may fetch a competition's labelled images alone (folds, train and
    predict then refuse a competition without test images, still before any training)."""
    p = load_params(PARAMS)
    if competition is None:
        competition = read_competition(
            Path(p["competition"]),
            fmt=p["competition_format"],
            id_column=p["id_column"],
            label_column=p["label_column"],
            label_pattern=p["label_pattern"],
            test_share=p["test_share"],
        )
    # A queued experiment runs in a temporary copy; its experiments are the project's (DVC_ROOT).
    run_prechecks(
        Setup(
            competition=competition,
            submission_format=p["submission_format"],
            classes_file=p["classes_file"],
            sample_submission=p["sample_submission"],
            ensemble_runs=p["ensemble_runs"],
            ensemble_weights=p["ensemble_weights"],
            metric=p["metric"],
            root=Path(os.environ.get("DVC_ROOT", ".")),
        ),
        skip=() if needs_test else (check_test_split,),
    )
