"""From the runs' predictions to the submission and its scores: the ensemble stage's work.

In: this run's and the other members' RunPredictions, the submission Layout, the known test
answers (or None) and the ensemble settings (merge, weights or `auto`, target prior, prior
correction, clip bounds). Out: an Outcome: the submission frame, the OOF blend (for the
reports), the detail metrics and the headline numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lib.acquire.competition_files import CompetitionFiles
from lib.acquire.layouts import Competition
from lib.common.images import list_test_images
from lib.infer.ensemble import RunPredictions
from lib.infer.final import final_submission
from lib.infer.members import load_members
from lib.infer.predictions import Predictions, check_test_ids
from lib.infer.scoring import blend_runs, detail_scores, headline, test_scores
from lib.infer.submission import Layout, competition_class_names, competition_layout
from lib.infer.weights import fit_run_weights


@dataclass
class Outcome:
    frame: pd.DataFrame  # the submission, in the layout's row order
    oof: Predictions  # the OOF blend
    detail: dict  # metrics/ensemble_detail.json
    headline: dict  # metrics/ensemble.json
    layout: Layout | None = None  # what the submission must look like
    names: dict[int, str] | None = None  # class names, when the competition has them


def ensemble_competition(competition: Competition, *, files: CompetitionFiles,
                         predictions_dir: Path, train_folds: Sequence[int],
                         ensemble_runs: Sequence[str], root: Path, test_images: Path,
                         submission_format: str, how: str,
                         weights: Sequence[float] | str | None, target_prior: str,
                         prior_correction: bool, low: float, high: float) -> Outcome:
    """Everything the ensemble stage computes: the runs gathered (`root`: the project whose
    experiments and cache are read) and checked against the current test images, blended,
    scored and laid out as the competition's submission."""
    runs, commits = gather_runs(predictions_dir, folds=train_folds, entries=ensemble_runs,
                                root=root, how=how)
    names = competition_class_names(files.classes_file, competition)
    layout = competition_layout(submission_format, competition, names=names,
                                sample=files.sample_submission, extra_labels=runs[0].test.classes)
    check_runs_current(runs, test_ids=layout.ids, on_disk=list_test_images(test_images)[1]
                       if test_images.is_dir() else None)
    outcome = blend_and_score(runs, layout=layout, test_labels=files.test_labels, how=how,
                              weights=weights, target_prior=target_prior,
                              prior_correction=prior_correction, low=low, high=high)
    outcome.detail["members"] = commits
    outcome.layout, outcome.names = layout, names
    return outcome


def blend_and_score(runs: Sequence[RunPredictions], *, layout: Layout, test_labels: Path | None,
                    how: str, weights: Sequence[float] | str | None, target_prior: str,
                    prior_correction: bool, low: float, high: float) -> Outcome:
    """`weights`: one per run (this run first), None for equal, or "auto" to fit them on the
    OOF predictions (lib.infer.weights), scored nested."""
    fit = fit_run_weights(runs, how=how) if weights == "auto" else None
    blend = blend_runs(runs, how=how, weights=fit.weights if fit else weights,
                       target_prior=target_prior)
    detail = detail_scores(runs, blend, low=low, high=high,
                           nested=fit.nested if fit else None)
    final = final_submission(blend.test, layout=layout, source=blend.source,
                             target=blend.target, prior_correction=prior_correction, low=low,
                             high=high)
    detail["submission"] = {"rows": len(final.frame), "filled_missing_images": final.filled}
    if test_labels:
        detail["test"] = test_scores(test_labels, layout, final.test, prior=final.prior,
                                     fallback_column=final.fallback_column)
    if fit:
        detail["weights"] = fit.metrics()
    return Outcome(frame=final.frame, oof=blend.oof, detail=detail,
                   headline=headline(detail, prior_correction=prior_correction))


def gather_runs(predictions_dir: Path, *, folds: Sequence[int], entries: Sequence[str],
                root: Path, how: str) -> tuple[list[RunPredictions], dict[str, str | None]]:
    """This run's predictions, then each member of `entries` (lib.infer.members); and the commit
    each member was read from (None for a folder)."""
    this_run = RunPredictions(predictions_dir, folds=folds, how=how)
    members = load_members(entries, this_run=this_run, root=root, how=how)
    return [this_run, *(m.run for m in members)], {m.run.name: m.source.commit for m in members}


def check_runs_current(runs: Sequence[RunPredictions], *, test_ids: Sequence,
                       on_disk: Sequence | None) -> None:
    """Every run's test predictions were made for the current test images
    (lib.infer.predictions)."""
    for i, member in enumerate(runs):
        rerun = "dvc repro predict" if i == 0 else \
            f"dvc exp run for {member.name} again, or take it out of ensemble_runs"
        check_test_ids(member.test, expected=test_ids, on_disk=on_disk, source=member.name,
                       rerun=rerun)
