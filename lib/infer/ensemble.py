"""Combine predictions (folds, runs), correct the class prior, clip, and score.

In: Predictions (lib.infer.predictions) of several folds or runs, a merge method, optional weights,
class priors and clip bounds. Out: merged Predictions aligned by (split, image id),
prior-corrected and clipped-and-renormalised probabilities, and metrics (accuracy, top-3
accuracy, log loss).

- Merging: the weighted arithmetic mean of the probabilities, or their weighted geometric mean
  (exp of the weighted mean log-probability, renormalised), which punishes a class any member
  rules out.
- Prior correction: a model trained on class frequencies `source` predicts p(c|x) proportional
  to p(x|c) source(c); on a test set with frequencies `target`, p(c|x) is proportional to
  p(c|x) target(c) / source(c) (Saerens et al. 2002). iMaterialist's test set is balanced while
  its training set is not: target = uniform.
- Clipping caps the log-loss cost of a confident mistake at about -log(low); rows are
  renormalised after clipping so they still sum to 1. The bounds must leave room around the
  uniform 1/n_classes (low < 1/n < high), else every row would be clipped flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.common.csvfile import int_field, read_columns
from lib.common.errors import ParamError, UserError
from lib.common.ids import id_ranks
from lib.infer.merge import MERGES
from lib.infer.predictions import Predictions, load_predictions

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


def check_clip_bounds(*, low: float, high: float, n_classes: int) -> None:
    """ParamError (naming clip_low and clip_high) unless low < 1/n_classes < high: with
    low >= 1/n every probability is raised to at least the uniform one, with high <= 1/n
    lowered to at most it, and after renormalising every row is uniform."""
    if not low < 1 / n_classes < high:
        raise ParamError(
            f"clip_low = {low} and clip_high = {high} are not allowed with "
            f"{n_classes} classes: expected clip_low < 1/{n_classes} = "
            f"{1 / n_classes:.4g} < clip_high (else every row would be clipped "
            f"to uniform; 0.01/{n_classes} = {0.01 / n_classes:.2g} is a good "
            "clip_low)"
        )


def clip_probs(probs: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """Each row clipped to [low, high] and renormalised; bounds as `check_clip_bounds` wants."""
    check_clip_bounds(low=low, high=high, n_classes=probs.shape[1])
    clipped = np.clip(probs.astype(np.float64), low, high)
    return clipped / clipped.sum(axis=1, keepdims=True)


def read_target_prior(spec: str, classes: np.ndarray) -> np.ndarray:
    """ "uniform", or a CSV with columns label_id and prior (any positive numbers: counts or
    frequencies), one row per class; returned normalised, in `classes` order."""
    if spec == "uniform":
        return np.full(len(classes), 1.0 / len(classes))
    path = Path(spec)
    records = read_columns(path, what="target prior", columns=("label_id", "prior"))
    given = {
        int_field(row["label_id"], path=path, line=line, column="label_id"): _number(
            row["prior"], path=path, line=line
        )
        for line, row in records
    }
    missing = [int(c) for c in classes if int(c) not in given]
    if missing:
        raise UserError(
            f"{path}: no prior for label_id {missing[:5]} "
            f"({len(missing)} classes missing); every class needs one"
        )
    values = np.array([given[int(c)] for c in classes])
    if not np.isfinite(values).all() or (values <= 0).any():
        raise UserError(f"{path}: priors must be positive numbers")
    return values / values.sum()


def _number(text: str, *, path: Path, line: int) -> float:
    """A prior cell as a float; else a UserError naming the file and line."""
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{path}: line {line}: prior {text[:40]!r} is not a number") from None


def correct_prior(probs: np.ndarray, *, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Re-weight each row by target / source and renormalise (float64)."""
    weighted = probs.astype(np.float64) * (np.asarray(target) / np.asarray(source))
    return weighted / weighted.sum(axis=1, keepdims=True)


def target_columns(classes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Column index of each true label id; a label outside the class list is an error."""
    column = {int(label): i for i, label in enumerate(classes)}
    missing = sorted({int(t) for t in targets} - column.keys())
    if missing:
        raise UserError(f"labels {missing[:5]} are not among the model's classes")
    return np.array([column[int(t)] for t in targets], dtype=np.int64)


def accuracy(probs: np.ndarray, columns: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == columns))


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
    rows = probs.astype(np.float64) / probs.sum(axis=1, keepdims=True)
    picked = np.clip(rows[np.arange(len(columns)), columns], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))


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


class RunPredictions:
    """One run's predictions folder (`predictions/` of this or another experiment): the
    folds' OOF rows together, their test (and holdout) predictions merged. `name` says which
    run it is in messages and metrics (default: the folder), since a run read from the DVC
    cache is loaded from a temporary folder."""

    def __init__(
        self,
        folder: Path,
        *,
        folds: Sequence[int] | None = None,
        how: str = "mean",
        name: str | None = None,
    ):
        self.folder = Path(folder)
        self.name = name or str(self.folder)
        if folds is None:
            found = sorted(self.folder.glob("fold*/oof.npz"))
            folds = sorted(int(p.parent.name[4:]) for p in found if p.parent.name[4:].isdigit())
            if not folds:
                raise UserError(
                    f"{self.folder}: no fold<k>/oof.npz inside; expected a copy of "
                    "a finished run's predictions/ folder"
                )
        self.folds = list(folds)
        self.fold_oof = {k: self._load(k, "oof") for k in self.folds}
        self.oof = concat_oof(list(self.fold_oof.values()))
        names = [f"{self.name}/fold{k}" for k in self.folds]
        self.test = combine([self._load(k, "test") for k in self.folds], how=how, names=names)
        self.holdout = (
            combine([self._load(k, "holdout") for k in self.folds], how=how, names=names)
            if all(self._path(k, "holdout").is_file() for k in self.folds)
            else None
        )

    def _path(self, fold: int, split: str) -> Path:
        return self.folder / f"fold{fold}" / f"{split}.npz"

    def _load(self, fold: int, split: str) -> Predictions:
        return load_predictions(self._path(fold, split))


def most_probable_column(prior: np.ndarray, tie_break: np.ndarray) -> int:
    """The column with the highest prior; ties (a uniform prior) go to `tie_break`'s highest."""
    return int(np.lexsort((-np.asarray(tie_break), -np.asarray(prior)))[0])
