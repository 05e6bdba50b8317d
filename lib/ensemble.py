"""Combine folds' probabilities, clip them, and score them.

In: Predictions per fold (lib.predictions), clip bounds. Out: the mean test probabilities
aligned by image id, clipped-and-renormalised probabilities, and metrics (accuracy, log loss).
Clipping caps the log-loss cost of a confident mistake at -log(low); rows are renormalised after
clipping so they still sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lib.errors import UserError
from lib.predictions import Predictions


def mean_of_folds(folds: Sequence[Predictions]) -> Predictions:
    """The arithmetic mean of the folds' probabilities on the same images (test or holdout),
    rows aligned by image id; targets, when present, come along."""
    first = folds[0]
    for other in folds[1:]:
        if not np.array_equal(other.classes, first.classes):
            raise UserError("folds were trained on different class lists: re-run all folds")
        if not np.array_equal(np.sort(other.image_ids), np.sort(first.image_ids)):
            raise UserError("folds predicted different images: re-run predict for every fold")
    order = np.argsort(first.image_ids)
    stacked = [f.probs[np.argsort(f.image_ids)] for f in folds]
    targets = first.targets[order] if first.targets is not None else None
    return Predictions(probs=np.mean(stacked, axis=0).astype(np.float32),
                       image_ids=first.image_ids[order], classes=first.classes, targets=targets)


def concat_oof(folds: Sequence[Predictions]) -> Predictions:
    """Every fold's out-of-fold rows in one set (each image is held out by exactly one fold)."""
    return Predictions(probs=np.concatenate([f.probs for f in folds]),
                       image_ids=np.concatenate([f.image_ids for f in folds]),
                       classes=folds[0].classes,
                       splits=np.concatenate([f.splits for f in folds]),
                       targets=np.concatenate([f.targets for f in folds]))


def clip_probs(probs: np.ndarray, *, low: float, high: float) -> np.ndarray:
    clipped = np.clip(probs.astype(np.float64), low, high)
    return clipped / clipped.sum(axis=1, keepdims=True)


def target_columns(classes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Column index of each true label id; a label outside the class list is an error."""
    column = {int(label): i for i, label in enumerate(classes)}
    missing = sorted({int(t) for t in targets} - column.keys())
    if missing:
        raise UserError(f"labels {missing[:5]} are not among the model's classes")
    return np.array([column[int(t)] for t in targets], dtype=np.int64)


def accuracy(probs: np.ndarray, columns: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == columns))


def log_loss(probs: np.ndarray, columns: np.ndarray, eps: float = 1e-15) -> float:
    """Multi-class log loss as Kaggle computes it (rows renormalised, clipped at 1e-15)."""
    rows = probs.astype(np.float64) / probs.sum(axis=1, keepdims=True)
    picked = np.clip(rows[np.arange(len(columns)), columns], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))


def score(probs: np.ndarray, columns: np.ndarray, *, low: float, high: float) -> dict:
    return {"accuracy": accuracy(probs, columns),
            "log_loss": log_loss(probs, columns),
            "log_loss_clipped": log_loss(clip_probs(probs, low=low, high=high), columns)}
