"""Ensemble weights fitted on out-of-fold predictions (`ensemble_weights: auto`), scored honestly.

In: each member's OOF probabilities with their rows aligned (one n_rows x n_classes array per
member, or the members' RunPredictions), the true column of each row, the merge method (`mean`
or `geomean`, blended as lib.infer.combine.merge_probs does) and the fold of each row.
Out: non-negative weights summing to 1 that minimise the blend's OOF log loss, fitted on every
row (the weights the test predictions get); the nested OOF blend, in which each fold's rows are
blended with weights fitted on the other folds' rows only, and its scores; a dict for the
metrics with each member's weight.

The objective is the OOF log loss for `proba` and for `label` submissions alike. For `proba`
it is the competition's metric. For `label` (top-1 accuracy), the accuracy of a blend is
piecewise constant in the weights: its gradient is zero almost everywhere, so it can only be
searched on a grid that grows exponentially with the members, and among its many tied plateaus
the search picks the one that best fits the noise of the OOF rows. Log loss is smooth and
convex in the weights for both merges (-log of a linear function for `mean`, log-sum-exp of a
linear function minus a linear one for `geomean`), so a gradient method finds its one optimum;
it uses the margin of every row, not only the few rows near a tie; and the blend with the lower
log loss is the better-calibrated posterior, whose argmax is the decision that maximises
expected accuracy. The nested score reports accuracy beside log loss, so a label competition
sees what the fitted weights do to its own metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from lib.infer.combine import _TINY, combine, merge_probs, normalised_weights, sorted_rows
from lib.infer.merge import MERGES
from lib.infer.metrics import accuracy, log_loss, target_columns
from lib.infer.predictions import Predictions
from lib.infer.runs import RunPredictions

OBJECTIVE = "log_loss"
NESTED_GROUPS = 5  # row groups for the nested score when the OOF rows come from one fold only

Loss = Callable[[np.ndarray], tuple[float, np.ndarray]]  # weights -> (loss, its gradient)


@dataclass
class WeightFit:
    """Weights fitted on the OOF rows of the members `names` (this run first)."""

    names: list[str]
    weights: np.ndarray  # fitted on every OOF row: the weights for the test predictions
    fold_weights: dict[int, np.ndarray]  # fitted without fold k's rows, applied to them
    nested: Predictions  # every OOF row, blended with weights fitted without its fold
    nested_scores: dict[str, float]
    equal_scores: dict[str, float]  # the same members with equal weights, for comparison

    def metrics(self) -> dict:
        """Each member's weight, and the nested and equal-weight OOF scores."""
        return {
            "objective": OBJECTIVE,
            "weights": {name: float(w) for name, w in zip(self.names, self.weights, strict=True)},
            "nested_oof": self.nested_scores,
            "equal_oof": self.equal_scores,
        }


def fit_run_weights(runs: Sequence[RunPredictions], *, how: str = "mean") -> WeightFit:
    """Fit and nest-score weights for the runs' OOF predictions (rows matched by split and
    image id; UserError naming the run that predicted other rows or classes). A row's fold is
    its fold in the first run (this run); with one fold only, the rows are split into
    NESTED_GROUPS seeded groups, since weights need rows of their own to be scored on."""
    names = [r.name for r in runs]
    equal = combine([r.oof for r in runs], how=how, names=names)
    rows = [sorted_rows(r.oof) for r in runs]
    columns = target_columns(equal.classes, equal.targets)
    probs = [r.probs for r in rows]
    weights = fit_weights(probs, columns, how=how)
    groups = nesting_groups(fold_of_rows(equal, runs[0].fold_oof))
    blended, fold_weights = nested_blend(probs, columns, groups, how=how)
    prior = None
    if all(r.prior is not None for r in rows):
        prior = np.tensordot(weights, np.stack([r.prior for r in rows]), axes=1)
    nested = Predictions(
        probs=blended.astype(np.float32),
        image_ids=equal.image_ids,
        classes=equal.classes,
        splits=equal.splits,
        targets=equal.targets,
        prior=prior,
    )
    return WeightFit(
        names=names,
        weights=weights,
        fold_weights=fold_weights,
        nested=nested,
        nested_scores=_scores(blended, columns),
        equal_scores=_scores(equal.probs, columns),
    )


def _scores(probs: np.ndarray, columns: np.ndarray) -> dict[str, float]:
    return {"log_loss": log_loss(probs, columns), "accuracy": accuracy(probs, columns)}


def fit_weights(
    probs: Sequence[np.ndarray], columns: np.ndarray, *, how: str = "mean"
) -> np.ndarray:
    """Non-negative weights summing to 1, one per member of `probs` (arrays of one shape, rows
    aligned), that minimise the log loss of their `how` blend against the true `columns`."""
    if how not in MERGES:
        raise ValueError(f"how must be one of {MERGES}, not {how!r}")
    count = len(probs)
    start = np.full(count, 1.0 / count)
    if count == 1:
        return start
    loss = _mean_loss(probs, columns) if how == "mean" else _geomean_loss(probs, columns)
    result = minimize(
        loss,
        start,
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * count,
        constraints=[
            {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}
        ],
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    fitted = normalised_weights(np.clip(result.x, 0.0, None), count)
    # SLSQP may stop early on a flat stretch; the fit is then never worse than equal weights
    return fitted if loss(fitted)[0] <= loss(start)[0] else start


def _mean_loss(probs: Sequence[np.ndarray], columns: np.ndarray) -> Loss:
    """-mean log(sum_m w_m p_m[i, y_i]): only each row's true column matters to a mean."""
    rows = np.arange(len(columns))
    truth = np.stack([np.asarray(p, dtype=np.float64)[rows, columns] for p in probs], axis=1)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        mixed = np.maximum(truth @ w, _TINY)
        return float(-np.mean(np.log(mixed))), -(truth / mixed[:, None]).mean(axis=0)

    return loss


def _geomean_loss(probs: Sequence[np.ndarray], columns: np.ndarray) -> Loss:
    """Log loss of softmax(sum_m w_m log p_m): log-sum-exp over classes minus the true
    column's score; its gradient is the blend's expected log p_m minus the true log p_m."""
    logs = np.stack([np.log(np.maximum(np.asarray(p, dtype=np.float64), _TINY)) for p in probs])
    picked = logs[:, np.arange(len(columns)), columns]  # (members, rows)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        scores = np.tensordot(w, logs, axes=1)
        top = scores.max(axis=1, keepdims=True)
        exp = np.exp(scores - top)
        total = exp.sum(axis=1, keepdims=True)
        value = np.mean(top[:, 0] + np.log(total[:, 0]) - w @ picked)
        expected = np.einsum("nc,mnc->m", exp / total, logs) / len(columns)
        return float(value), expected - picked.mean(axis=1)

    return loss


def nested_blend(
    probs: Sequence[np.ndarray], columns: np.ndarray, groups: np.ndarray, *, how: str = "mean"
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Each group's rows blended with weights fitted on the other groups' rows only. Out: the
    blended probabilities (every row) and the weights used for each group."""
    labels = np.unique(groups).tolist()
    if len(labels) < 2:
        raise ValueError(f"nested scoring needs two or more groups of rows, got {labels}")
    blended = np.empty(np.shape(probs[0]), dtype=np.float64)
    fold_weights = {}
    for group in labels:
        held = groups == group
        weights = fit_weights([p[~held] for p in probs], columns[~held], how=how)
        blended[held] = merge_probs([p[held] for p in probs], how=how, weights=weights)
        fold_weights[group] = weights
    return blended, fold_weights


def fold_of_rows(oof: Predictions, fold_oof: Mapping[int, Predictions]) -> np.ndarray:
    """The fold whose held-out rows hold each row of `oof`, matched by (split, image id)."""
    fold_of = {
        (str(split), str(image_id)): fold
        for fold, part in fold_oof.items()
        for split, image_id in zip(part.splits, part.image_ids, strict=True)
    }
    return np.array(
        [
            fold_of[(str(split), str(image_id))]
            for split, image_id in zip(oof.splits, oof.image_ids, strict=True)
        ]
    )


def nesting_groups(folds: np.ndarray, *, count: int = NESTED_GROUPS, seed: int = 0) -> np.ndarray:
    """`folds` when they hold two or more folds; else the rows dealt into `count` groups in a
    seeded random order, since weights are never scored on the rows they were fitted to."""
    if len(np.unique(folds)) >= 2:
        return np.asarray(folds)
    order = np.random.default_rng(seed).permutation(len(folds))
    groups = np.empty(len(folds), dtype=np.int64)
    groups[order] = np.arange(len(folds)) % min(count, max(len(folds), 1))
    return groups
