"""The metrics a run is judged by: the competition's (the `metric` param) and the ones every run
reports (accuracy, top-k accuracy, log loss), one function each.

In: the predicted probabilities (rows x classes, the columns in the order of `classes`) and the
column of each row's true class (`target_columns` turns true label ids into columns); for
`qwk`, the label ids of the columns (the grades). Out: one float per metric (per row for
`top_k_hits`); which way is better (`higher_is_better`); whether the metric is a smooth
function of blend weights (`differentiable`), so that `ensemble_weights: auto` can fit to it.

- accuracy: share of rows whose most probable class is the true one.
- log_loss: multi-class log loss as Kaggle computes it (rows renormalised, clipped at 1e-15).
- map@k (k = 1..5): mean average precision at k for one true label per row, as Kaggle's
  evaluation pages define it (https://www.kaggle.com/competitions/humpback-whale-identification
  /overview/evaluation): the k most probable labels in order; a row scores 1/rank of its true
  label when that is among them, else 0 (each label appears once, so precision at the hit is
  1/rank and the other terms are 0).
- f1_macro: the F1 score of each class (predicted = most probable), averaged over the classes
  that are true or predicted in some row, unweighted (scikit-learn's `average='macro'`).
- qwk: Cohen's kappa with quadratic weights between the true and the predicted (most
  probable) grade, over the rating scale of every class (APTOS, diabetic retinopathy):
  1 - sum(W * O) / sum(W * E), W[i, j] = (i - j)^2 / (N - 1)^2, O the observed confusion
  matrix, E the outer product of its marginals scaled to O's total.
Ties between classes go to the lower column, the same everywhere (argmax, stable sort).
"""

from __future__ import annotations

import re

import numpy as np

from lib.common.errors import UserError
from lib.common.params import METRICS  # the names the `metric` param allows: one list

_MAP = re.compile(r"map@([1-5])")
_TINY = 1e-15  # Kaggle's floor for log loss


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is the better one (every metric but log loss)."""
    _known(metric)
    return metric != "log_loss"


def differentiable(metric: str) -> bool:
    """Whether `metric` is a smooth function of the blend's probabilities. Accuracy, MAP@k,
    F1 and kappa depend on the probabilities only through their order (argmax or top k), so
    they are piecewise constant in the blend weights, with a zero gradient almost everywhere."""
    _known(metric)
    return metric == "log_loss"


def map_k(metric: str) -> int | None:
    """k of `map@k`, else None."""
    found = _MAP.fullmatch(metric)
    return int(found.group(1)) if found else None


def score_metric(metric: str, probs: np.ndarray, columns: np.ndarray, classes: np.ndarray) -> float:
    """`metric` of `probs` against the true `columns`; `classes`: the label id of each column."""
    _known(metric)
    k = map_k(metric)
    if k is not None:
        return map_at_k(probs, columns, k)
    if metric == "accuracy":
        return accuracy(probs, columns)
    if metric == "log_loss":
        return log_loss(probs, columns)
    if metric == "f1_macro":
        return f1_macro(probs, columns)
    return qwk(probs, columns, classes)


def target_columns(classes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Column index of each true label id; a label outside the class list is an error."""
    column = {int(label): i for i, label in enumerate(classes)}
    missing = sorted({int(t) for t in targets} - column.keys())
    if missing:
        raise UserError(f"labels {missing[:5]} are not among the model's classes")
    return np.array([column[int(t)] for t in targets], dtype=np.int64)


def accuracy(probs: np.ndarray, columns: np.ndarray) -> float:
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(columns)))


def top_k_hits(probs: np.ndarray, columns: np.ndarray, k: int = 3) -> np.ndarray:
    """Per row, whether its true column is among the k most probable (ties: lower column)."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return (top == columns[:, None]).any(axis=1)


def top_k_accuracy(probs: np.ndarray, columns: np.ndarray, k: int = 3) -> float:
    """Share of rows whose true column is among the k most probable (ties: lower column)."""
    return float(np.mean(top_k_hits(probs, columns, k)))


def log_loss(probs: np.ndarray, columns: np.ndarray, eps: float = _TINY) -> float:
    """Multi-class log loss as Kaggle computes it (rows renormalised, clipped at 1e-15)."""
    probs = np.asarray(probs)
    rows = probs.astype(np.float64) / probs.sum(axis=1, keepdims=True)
    picked = np.clip(rows[np.arange(len(columns)), columns], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))


def top_k_columns(probs: np.ndarray, k: int) -> np.ndarray:
    """The k most probable columns of each row, best first (ties: the lower column)."""
    return np.argsort(-np.asarray(probs, dtype=np.float64), axis=1, kind="stable")[:, :k]


def map_at_k(probs: np.ndarray, columns: np.ndarray, k: int) -> float:
    """Mean over rows of 1/rank of the true column among the k most probable, 0 if absent."""
    top = top_k_columns(probs, k)
    return map_at_k_lists(top.tolist(), np.asarray(columns).tolist(), k)


def map_at_k_lists(predicted: list[list], actual: list, k: int) -> float:
    """MAP@k of ranked label lists (a submission's cells) against one true label per row, by
    Kaggle's formula: sum over ranks i <= k of P(i) * rel(i), divided by min(m, k) = 1 (m = 1
    true label);
    a label repeated in a row counts at its first rank only."""
    total = 0.0
    for guesses, truth in zip(predicted, actual, strict=True):
        seen = []
        for rank, guess in enumerate(guesses[:k], start=1):
            if guess == truth and guess not in seen:
                total += 1.0 / rank
                break
            seen.append(guess)
    return total / len(actual) if len(actual) else 0.0


def f1_macro(probs: np.ndarray, columns: np.ndarray) -> float:
    predicted = np.asarray(probs).argmax(axis=1)
    columns = np.asarray(columns)
    scores = []
    for c in np.union1d(predicted, columns):
        tp = np.sum((predicted == c) & (columns == c))
        fp = np.sum((predicted == c) & (columns != c))
        fn = np.sum((predicted != c) & (columns == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def qwk(probs: np.ndarray, columns: np.ndarray, classes: np.ndarray) -> float:
    """Quadratic weighted kappa; the grades are the label ids in `classes` (sorted, they are
    the rating scale 1..N of the formula). 1.0 when truth and prediction are one constant."""
    n = len(classes)
    order = np.argsort(np.asarray(classes), kind="stable")  # column -> position on the scale
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    truth = rank[np.asarray(columns)]
    predicted = rank[np.asarray(probs).argmax(axis=1)]
    observed = np.zeros((n, n))
    np.add.at(observed, (truth, predicted), 1)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1)
    grid = np.arange(n)
    weights = (grid[:, None] - grid[None, :]) ** 2 / max(n - 1, 1) ** 2
    denominator = float((weights * expected).sum())
    if denominator == 0:  # one grade everywhere on both sides: perfect (or undefined) agreement
        return 1.0
    return float(1.0 - (weights * observed).sum() / denominator)


def _known(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
