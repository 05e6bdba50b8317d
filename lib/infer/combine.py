"""Merge predictions of the same images: a run's folds on the test set, several runs on their OOF
rows.

In: Predictions (lib.infer.predictions) of several folds or runs, a merge method
(lib.infer.merge.MERGES) and optional weights. Out: one Predictions, rows aligned by (split,
image id), targets carried along, the priors averaged with the same weights; a run's folds'
OOF rows as one set.

- "mean": the weighted arithmetic mean of the probabilities.
- "geomean": their weighted geometric mean (exp of the weighted mean log-probability,
  renormalised), which punishes a class any member rules out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lib.common.errors import UserError
from lib.common.ids import id_ranks
from lib.infer.merge import MERGES
from lib.infer.predictions import Predictions

_TINY = 1e-15  # log(0) guard for the geometric mean, the floor Kaggle's log loss uses too


def merge_probs(
    probs: Sequence[np.ndarray], *, how: str, weights: Sequence[float] | None = None
) -> np.ndarray:
    """Weighted mean ("mean") or normalised weighted geometric mean ("geomean") of
    probability arrays of one shape; weights default to equal and need not sum to 1."""
    if how not in MERGES:
        raise ValueError(f"how must be one of {MERGES}, not {how!r}")
    w = normalised_weights(weights, len(probs))
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probs])
    if how == "mean":
        merged = np.tensordot(w, stacked, axes=1)
    else:
        log_mean = np.tensordot(w, np.log(np.maximum(stacked, _TINY)), axes=1)
        merged = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    return merged / merged.sum(axis=1, keepdims=True)


def normalised_weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    """``weights`` (equal when None) scaled to sum to 1; ValueError unless there are ``count``
    of them, none negative, with a positive sum."""
    w = np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != count or w.sum() <= 0 or (w < 0).any():
        raise ValueError(
            f"{len(w)} non-negative weights with a positive sum are needed for {count} arrays"
        )
    return w / w.sum()


def sorted_rows(p: Predictions) -> Predictions:
    """The rows in (split, image id) order (``lib.common.ids.id_order``): ids repeat across
    splits, so both make the key."""
    ranks = id_ranks(p.image_ids)
    order = (
        np.lexsort((ranks, p.splits)) if p.splits is not None else np.argsort(ranks, kind="stable")
    )
    splits = p.splits[order] if p.splits is not None else None
    targets = p.targets[order] if p.targets is not None else None
    return Predictions(
        probs=p.probs[order],
        image_ids=p.image_ids[order],
        classes=p.classes,
        splits=splits,
        targets=targets,
        prior=p.prior,
    )


def combine(
    parts: Sequence[Predictions],
    *,
    how: str = "mean",
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> Predictions:
    """Merge predictions of the same images (folds on test, runs on OOF), rows aligned by
    (split, image id); targets come along, the priors are averaged with the same weights."""
    names = list(names) if names is not None else [f"part {i}" for i in range(len(parts))]
    rows = [sorted_rows(p) for p in parts]
    first = rows[0]
    for name, other in zip(names[1:], rows[1:], strict=True):
        if not np.array_equal(other.classes, first.classes):
            raise UserError(
                f"{name}: different class list from {names[0]} "
                f"({len(other.classes)} vs {len(first.classes)} classes): "
                "predictions of models trained on other classes cannot be merged"
            )
        same = np.array_equal(other.image_ids, first.image_ids) and (
            first.splits is None or np.array_equal(other.splits, first.splits)
        )
        if not same:
            raise UserError(
                f"{name}: predicted other images than {names[0]} "
                f"({len(other.image_ids)} vs {len(first.image_ids)} rows): re-run "
                "predict for every fold, with the same folds and train_folds"
            )
    prior = None
    if all(p.prior is not None for p in rows):
        prior = np.tensordot(
            normalised_weights(weights, len(rows)), np.stack([p.prior for p in rows]), axes=1
        )
    merged = merge_probs([p.probs for p in rows], how=how, weights=weights)
    return Predictions(
        probs=merged.astype(np.float32),
        image_ids=first.image_ids,
        classes=first.classes,
        splits=first.splits,
        targets=first.targets,
        prior=prior,
    )


def concat_oof(folds: Sequence[Predictions]) -> Predictions:
    """Every fold's out-of-fold rows in one set (each image is held out by exactly one fold);
    the prior is the folds' average."""
    priors = [f.prior for f in folds]
    return Predictions(
        probs=np.concatenate([f.probs for f in folds]),
        image_ids=np.concatenate([f.image_ids for f in folds]),
        classes=folds[0].classes,
        splits=np.concatenate([f.splits for f in folds]),
        targets=np.concatenate([f.targets for f in folds]),
        prior=np.mean(priors, axis=0) if all(p is not None for p in priors) else None,
    )
