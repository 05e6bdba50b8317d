"""The class prior: the test set's (target_prior), the correction for it, and the class an image
without a prediction gets.

In: the target prior's spec ("uniform" or a CSV of label_id,prior), probabilities and the class
priors the models were trained under (`source`) and the test set's (`target`). Out: the target
prior in class order; prior-corrected probabilities; the most probable column under a prior.

A model trained on class frequencies `source` predicts p(c|x) proportional to p(x|c) source(c);
on a test set with frequencies `target`, p(c|x) is proportional to p(c|x) target(c) / source(c)
(Saerens et al. 2002). iMaterialist's test set is balanced while its training set is not:
target = uniform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.common.csvfile import int_field, read_columns
from lib.common.errors import UserError


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


def most_probable_column(prior: np.ndarray, tie_break: np.ndarray) -> int:
    """The column with the highest prior; ties (a uniform prior) go to `tie_break`'s highest."""
    return int(np.lexsort((-np.asarray(tie_break), -np.asarray(prior)))[0])
