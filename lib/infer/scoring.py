"""Score predictions against the truth: the detail metrics of the ensemble and its headline.

In: the runs (RunPredictions, lib.infer.runs) and their Blend (lib.infer.blending), the clip
bounds and the competition's `metric`; for the test, the known answers (a test_labels file, or
the held-out share's) and the submitted probabilities. Out: `score`'s numbers of one set of
predictions (accuracy, top-3 accuracy, log loss raw and clipped, and prior-corrected); the
detail metrics (per fold, per run, OOF, holdout, test), each also in `metric`
(lib.infer.metrics); the headline numbers `dvc exp show` displays (`oof.<metric>` beside
accuracy and log loss).

The headline scores what is submitted: prior-corrected when prior_correction is on, and the log
loss of the clipped probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lib.common.csvfile import id_field, int_field, read_columns
from lib.common.errors import UserError
from lib.infer.clipping import clip_probs
from lib.infer.metrics import (
    accuracy,
    log_loss,
    score_metric,
    target_columns,
    top_k_accuracy,
)
from lib.infer.predictions import Predictions
from lib.infer.prior import correct_prior
from lib.infer.runs import RunPredictions
from lib.infer.submission import SubmissionLayout, build_submission, make_layout

if TYPE_CHECKING:
    from lib.infer.blending import Blend


def score(
    probs: np.ndarray,
    columns: np.ndarray,
    *,
    low: float,
    high: float,
    source: np.ndarray | None = None,
    target: np.ndarray | None = None,
) -> dict:
    """Accuracy, top-3 accuracy and log loss raw and clipped; with both priors given, also
    accuracy and log loss (raw and clipped) after prior correction."""
    scores = {
        "accuracy": accuracy(probs, columns),
        "top3_accuracy": top_k_accuracy(probs, columns, 3),
        "log_loss": log_loss(probs, columns),
        "log_loss_clipped": log_loss(clip_probs(probs, low=low, high=high), columns),
    }
    if source is not None and target is not None:
        corrected = correct_prior(probs, source=source, target=target)
        scores |= {
            "accuracy_prior": accuracy(corrected, columns),
            "log_loss_prior": log_loss(corrected, columns),
            "log_loss_prior_clipped": log_loss(clip_probs(corrected, low=low, high=high), columns),
        }
    return scores


def detail_scores(
    runs: Sequence[RunPredictions],
    blend: Blend,
    *,
    low: float,
    high: float,
    nested: Predictions | None = None,
    metric: str = "accuracy",
) -> dict:
    """Scores per fold of this run, per run (when several), of the OOF blend and the holdout.
    With weights fitted on the OOF rows, `nested` (each fold blended with weights fitted on the
    other folds) is what `oof` scores, honestly; the blend with the weights fitted on every row
    is scored as `oof_fitted`, an optimistic figure. Every entry has `metric` (of the raw
    probabilities) and `<metric>_prior` (prior-corrected) besides, unless it is accuracy or
    log loss, which are there already."""

    def scored(predictions: Predictions) -> dict:
        columns = target_columns(predictions.classes, predictions.targets)
        scores = score(
            predictions.probs, columns, low=low, high=high, source=blend.source, target=blend.target
        )
        if metric not in scores:
            corrected = correct_prior(predictions.probs, source=blend.source, target=blend.target)
            scores[metric] = score_metric(metric, predictions.probs, columns, predictions.classes)
            scores[f"{metric}_prior"] = score_metric(
                metric, corrected, columns, predictions.classes
            )
        return scores

    metrics = {f"fold{k}": scored(part) for k, part in runs[0].fold_oof.items()}
    if len(runs) > 1:
        metrics["runs"] = {r.name: scored(r.oof) for r in runs}
    metrics["oof"] = scored(nested if nested is not None else blend.oof)
    if nested is not None:
        metrics["oof_fitted"] = scored(blend.oof)
    if blend.holdout is not None:
        metrics["holdout"] = scored(blend.holdout)
    return metrics


def headline(detail: dict, *, prior_correction: bool, metric: str = "accuracy") -> dict:
    """The few numbers of metrics/ensemble.json, the columns of `dvc exp show`: OOF accuracy,
    log loss and `metric`, and the test's when answers are known."""
    oof = detail["oof"]
    numbers = {
        "oof": {
            "accuracy": oof["accuracy_prior" if prior_correction else "accuracy"],
            "log_loss": oof["log_loss_prior_clipped" if prior_correction else "log_loss_clipped"],
        }
    }
    if metric not in numbers["oof"]:
        numbers["oof"][metric] = oof[f"{metric}_prior" if prior_correction else metric]
    if "test" in detail:
        numbers["test"] = {
            key: detail["test"][key] for key in ("accuracy", metric) if key in detail["test"]
        }
    return numbers


def test_scores(
    truth: pd.DataFrame,
    layout: SubmissionLayout,
    test: Predictions,
    *,
    prior: np.ndarray,
    fallback_column: int,
    metric: str = "accuracy",
) -> dict:
    """Accuracy and `metric` of the submitted labels (and log loss of the submitted
    probabilities) against known answers (`truth`: read_answers' frame): the demo scores
    itself. Images without a prediction count with the fallback the submission gives them."""
    label_layout = make_layout("label", test_ids=layout.test_ids, labels=test.classes)
    labels, _ = build_submission(
        label_layout, test, fallback_probs=prior, fallback_column=fallback_column
    )
    labels = labels.set_axis(["id", "predicted"], axis=1).astype({"predicted": np.int64})
    merged = labels.merge(truth, on="id")
    known = merged[merged["id"].isin(set(test.image_ids.tolist()))]
    row_of = {str(i): r for r, i in enumerate(test.image_ids)}
    rows = np.array([row_of[str(i)] for i in known["id"]], dtype=np.int64)
    columns = target_columns(test.classes, known["label"].to_numpy())
    scores = {
        "accuracy": float((merged["predicted"] == merged["label"]).mean()),
        "log_loss_submitted": log_loss(test.probs[rows], columns),
    }
    if metric == "log_loss":
        scores["log_loss"] = scores["log_loss_submitted"]
    if metric not in scores:
        # what the submission shows: the submitted probabilities' ranking, the fallback first
        # for an image without a prediction (as build_submission writes it)
        fallback = np.asarray(prior, np.float64).copy()
        fallback[fallback_column] = np.inf
        probs = np.array(
            [test.probs[row_of[i]] if i in row_of else fallback for i in merged["id"]],
            dtype=np.float64,
        )
        probs = np.nan_to_num(probs, posinf=2.0)
        scores[metric] = score_metric(
            metric, probs, target_columns(test.classes, merged["label"].to_numpy()), test.classes
        )
    return scores


def answers_frame(answers: dict[str, int]) -> pd.DataFrame:
    """Known test answers (test id -> label id) as read_answers gives them."""
    return pd.DataFrame(list(answers.items()), columns=["id", "label"]).astype(
        {"id": str, "label": np.int64}
    )


def read_answers(path: Path, names: dict[int, str] | None = None) -> pd.DataFrame:
    """test_labels.csv (`id,label`) as a frame of id texts and integer label ids; with `names`
    (a competition whose labels are names), labels are its names. A bad cell is one line
    naming it."""
    records = read_columns(path, what="test answers", columns=("id", "label"))
    id_of = {name: label for label, name in (names or {}).items()}

    def label(text: str, line: int) -> int:
        if names is None:
            return int_field(text, path=path, line=line, column="label")
        if text not in id_of:
            raise UserError(
                f"{path}: line {line}: label {text[:40]!r} is not one of the "
                f"competition's labels ({', '.join(sorted(id_of)[:5])}, ...)"
            )
        return id_of[text]

    frame = pd.DataFrame(
        [
            (id_field(row["id"], path=path, line=line, column="id"), label(row["label"], line))
            for line, row in records
        ],
        columns=["id", "label"],
    )
    return frame.astype({"id": str, "label": np.int64})
