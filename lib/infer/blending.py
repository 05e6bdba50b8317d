"""Blend the runs' predictions into the submission and score it: the ensemble stage's work.

In: this run's and the other members' RunPredictions (lib.infer.runs, lib.infer.members), the
SubmissionLayout, the known test answers (a test_labels file, or the competition's held-out
share, or None), the competition's metric and the ensemble settings (merge, weights or `auto`,
target prior, prior correction, clip bounds): the ensemble stage's EnsembleConfig, whose fields
carry each key's rule. Out: a Blend (OOF, holdout and test predictions merged over runs, and
both class priors); an Outcome: the submission frame, the OOF blend (for the reports), the
detail metrics and the headline numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.acquire.competition_files import CompetitionFiles
from lib.acquire.layouts import Competition
from lib.common.images import list_test_images
from lib.common.params import Config, boolean, class_prior, number, param
from lib.infer.combine import combine
from lib.infer.final import final_submission
from lib.infer.members import gather_runs
from lib.infer.metrics import differentiable
from lib.infer.predictions import Predictions, training_prior
from lib.infer.prior import read_target_prior
from lib.infer.runs import RunPredictions, check_runs_current
from lib.infer.scoring import (
    answers_frame,
    detail_scores,
    headline,
    read_answers,
    test_scores,
)
from lib.infer.shapes import top_k
from lib.infer.submission import (
    SubmissionLayout,
    competition_class_names,
    competition_layout,
)
from lib.infer.weights import fit_run_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsembleConfig(Config):
    """The ensemble stage's config. Defaults and meaning: params.yaml. A field without a rule
    shares RULES' (the prechecks, the download or the commands read that key too)."""

    # how the competition is read
    competition: str = param()
    competition_format: str = param()
    id_column: str = param()
    label_column: str = param()
    label_pattern: str = param()
    test_share: float = param()
    test_labels: str | None = param()
    metric: str = param()
    train_folds: list[int] = param()
    # the blend, its prior correction and the clipping of what log loss scores
    clip_low: float = param(number(0, high=0.5))
    clip_high: float = param(number(0.5, strict=True, high=1.0))
    ensemble_merge: str = param()
    ensemble_runs: list[str] = param()
    ensemble_weights: list[float] | str = param()
    prior_correction: bool = param(boolean)
    target_prior: str = param(class_prior)
    # the submission
    submission_format: str = param()
    sample_submission: str | None = param()
    classes_file: str | None = param()


@dataclass
class Blend:
    oof: Predictions
    test: Predictions
    holdout: Predictions | None
    source: np.ndarray  # the class prior the models were trained under
    target: np.ndarray  # the class prior of the test set (target_prior)


def blend_runs(
    runs: Sequence[RunPredictions], *, how: str, weights: Sequence[float] | None, target_prior: str
) -> Blend:
    names = [r.name for r in runs]
    oof = combine([r.oof for r in runs], how=how, weights=weights, names=names)
    test = combine([r.test for r in runs], how=how, weights=weights, names=names)
    holdout = None
    if all(r.holdout is not None for r in runs):
        holdout = combine([r.holdout for r in runs], how=how, weights=weights, names=names)
    source = oof.prior if oof.prior is not None else training_prior(oof.targets, oof.classes)
    return Blend(
        oof=oof,
        test=test,
        holdout=holdout,
        source=source,
        target=read_target_prior(target_prior, oof.classes),
    )


@dataclass
class Outcome:
    frame: pd.DataFrame  # the submission, in the layout's row order
    oof: Predictions  # the OOF blend
    detail: dict  # metrics/ensemble_detail.json
    headline: dict  # metrics/ensemble.json
    layout: SubmissionLayout | None = None  # what the submission must look like
    names: dict[int, str] | None = None  # class names, when the competition has them


def ensemble_competition(
    competition: Competition,
    *,
    files: CompetitionFiles,
    predictions_dir: Path,
    root: Path,
    test_images: Path,
    config: EnsembleConfig,
) -> Outcome:
    """Everything the ensemble stage computes: the runs gathered (`root`: the project whose
    experiments and cache are read) and checked against the current test images, blended,
    scored (in the config's metric too) and laid out as the competition's submission."""
    submission_format, metric = config.submission_format, config.metric
    runs, commits = gather_runs(
        predictions_dir,
        folds=config.train_folds,
        entries=config.ensemble_runs,
        root=root,
        how=config.ensemble_merge,
    )
    names = competition_class_names(files.classes_file, competition)
    layout = competition_layout(
        submission_format,
        competition,
        names=names,
        sample=files.sample_submission,
        extra_labels=runs[0].test.classes,
        k=top_k(submission_format, metric),
    )
    check_runs_current(
        runs,
        test_ids=layout.test_ids,
        on_disk=list_test_images(test_images)[1] if test_images.is_dir() else None,
    )
    answers = None  # known test answers: a test_labels file, or the held-out share's
    if files.test_labels:
        answers = read_answers(files.test_labels, competition.class_names)
    elif competition.test_answers:
        answers = answers_frame(competition.test_answers)
    outcome = blend_and_score(
        runs,
        layout=layout,
        answers=answers,
        how=config.ensemble_merge,
        weights=config.ensemble_weights or None,  # []: equal weights
        target_prior=config.target_prior,
        prior_correction=config.prior_correction,
        low=config.clip_low,
        high=config.clip_high,
        metric=metric,
    )
    outcome.detail["members"] = commits
    outcome.layout, outcome.names = layout, names
    return outcome


def blend_and_score(
    runs: Sequence[RunPredictions],
    *,
    layout: SubmissionLayout,
    answers: pd.DataFrame | None,
    how: str,
    weights: Sequence[float] | str | None,
    target_prior: str,
    prior_correction: bool,
    low: float,
    high: float,
    metric: str = "accuracy",
) -> Outcome:
    """`weights`: one per run (this run first), None for equal, or "auto" to fit them on the
    OOF predictions (lib.infer.weights) to `metric` where it is differentiable, else to log
    loss, scored nested; `answers`: the known test answers (read_answers' frame) or None."""
    fit = None
    if weights == "auto":
        objective = metric if differentiable(metric) else "log_loss"
        log.info(
            "ensemble_weights auto: fitted to %s%s",
            objective,
            ""
            if objective == metric
            else f" (metric {metric} is piecewise constant in the weights)",
        )
        fit = fit_run_weights(runs, how=how)
    blend = blend_runs(
        runs, how=how, weights=fit.weights if fit else weights, target_prior=target_prior
    )
    detail = detail_scores(
        runs, blend, low=low, high=high, nested=fit.nested if fit else None, metric=metric
    )
    final = final_submission(
        blend.test,
        layout=layout,
        source=blend.source,
        target=blend.target,
        prior_correction=prior_correction,
        low=low,
        high=high,
    )
    detail["submission"] = {"rows": len(final.frame), "filled_missing_images": final.filled}
    if answers is not None:
        detail["test"] = test_scores(
            answers,
            layout,
            final.test,
            prior=final.prior,
            fallback_column=final.fallback_column,
            metric=metric,
        )
    if fit:
        detail["weights"] = fit.metrics() | {"metric": metric}
    return Outcome(
        frame=final.frame,
        oof=blend.oof,
        detail=detail,
        headline=headline(detail, prior_correction=prior_correction, metric=metric),
    )
