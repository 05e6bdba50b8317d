"""Blend runs' predictions and score the blend.

In: RunPredictions (lib.infer.ensemble) of this run and of ensemble_runs, the merge method and
weights, the target class prior, clip bounds, and known test answers when there are some.
Out: a Blend (OOF, holdout and test predictions merged over runs, and both priors); the detail
metrics (per fold, per run, OOF, holdout, test), each also in the competition's `metric`
(lib.infer.metrics); the headline numbers `dvc exp show` displays (`oof.<metric>` beside
accuracy and log loss); the lines a run prints at its end.

The headline scores what is submitted: prior-corrected when prior_correction is on, and the log
loss of the clipped probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.common.csvfile import id_field, int_field, read_columns
from lib.common.errors import UserError
from lib.infer.ensemble import (
    RunPredictions,
    combine,
    correct_prior,
    log_loss,
    read_target_prior,
    score,
    target_columns,
)
from lib.infer.metrics import score_metric
from lib.infer.predictions import Predictions, training_prior
from lib.infer.submission import Layout, build_submission, make_layout


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
    layout: Layout,
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


def summary(
    detail: dict,
    submission_format: str,
    metric: str = "accuracy",
    *,
    prior_correction: bool = False,
    this_run: str = "predictions",
) -> str:
    """The lines a Kaggler looks at, from the detail metrics: the competition's `metric` when it
    is another than accuracy and log loss, the prior-corrected scores only when prior_correction
    is on (they are then what is submitted), and each member's fitted weight when the weights
    were fitted (`this_run`: the name the current run's predictions go by in the detail)."""
    o, done = detail["oof"], detail["submission"]
    lines = [
        f"submission: {done['rows']} rows ({done['filled_missing_images']} without an image, "
        f"given the most probable class under the prior), format {submission_format}",
        f"OOF accuracy {o['accuracy']:.4f} (top-3 {o['top3_accuracy']:.4f}), log loss "
        f"{o['log_loss']:.4f} raw / {o['log_loss_clipped']:.4f} clipped",
    ]
    if prior_correction:
        lines.append(
            f"prior-corrected (as submitted): OOF accuracy {o['accuracy_prior']:.4f}, "
            f"log loss {o['log_loss_prior']:.4f} raw / "
            f"{o['log_loss_prior_clipped']:.4f} clipped"
        )
    if "weights" in detail:
        lines.append(weights_line(detail["weights"], this_run=this_run))
    if metric in o and metric not in ("accuracy", "log_loss"):
        lines.append(
            f"OOF {metric} {o[metric]:.4f} (the competition's metric)"
            + (f"; prior-corrected {o[f'{metric}_prior']:.4f}" if prior_correction else "")
        )
    if "test" in detail:  # known answers (test_labels): the demo scores itself
        t = detail["test"]
        lines.append(
            f"test accuracy {t['accuracy']:.4f}, log loss of the submitted "
            f"probabilities {t['log_loss_submitted']:.4f}"
            + (f", {metric} {t[metric]:.4f}" if metric in t and metric != "accuracy" else "")
        )
    return "\n".join(lines)


def weights_line(fit: dict, *, this_run: str = "predictions") -> str:
    """The fitted blend weights by member name (lib.infer.weights.WeightFit.metrics), with the
    nested OOF score they give against equal weights."""
    named = ", ".join(
        f"{'this run' if name == this_run else name} {weight:.3f}"
        for name, weight in fit["weights"].items()
    )
    nested, equal = fit["nested_oof"], fit["equal_oof"]
    return (
        f"blend weights fitted on the OOF {fit['objective'].replace('_', ' ')}: {named}; "
        f"nested OOF accuracy {nested['accuracy']:.4f}, log loss {nested['log_loss']:.4f} "
        f"(equal weights: {equal['accuracy']:.4f}, {equal['log_loss']:.4f})"
    )
