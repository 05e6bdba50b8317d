"""Pseudo-labels: the test images a finished run is sure of, as extra training images.

In: a source run (lib.train.source_run: `pseudo_from`), this run's classes and test images
(their paths and ids, as lib.common.images.list_test_images lists them), the threshold on the
top probability, the weight of a pseudo-labelled image in the loss and whether its target is
the run's probabilities (soft) or its top class (hard). Out: PseudoLabels: the chosen images
with one target row each (summing to 1) and their weight, the count per class and the
provenance (the run, its commit, a digest of what was read) the model records.

They join every fold's training set and never a validation set (lib.train.fold), so OOF
scores stay out of fold for the labelled images. What remains: the source run's models were
trained on every fold, so its test probabilities carry what fold k's labels taught them, and a
model trained on them scores fold k a little optimistically; the test set with answers is the
judge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lib.common.errors import UserError
from lib.train.source_run import SourceRun, check_classes, digest


@dataclass(frozen=True)
class PseudoLabels:
    ids: list[str]
    paths: list[Path]
    targets: np.ndarray  # (n, classes) float32, rows summing to 1
    weight: float
    per_class: dict[int, int]  # label -> images chosen
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def images_digest(self) -> str:
        """sha256 of the chosen images' bytes: the resume key changes if one is replaced."""
        h = hashlib.sha256()
        for path in self.paths:
            h.update(Path(path).read_bytes())
        return h.hexdigest()


def select(probs: np.ndarray, *, threshold: float, soft: bool) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the rows whose top probability is at least `threshold`, their targets):
    the rows themselves renormalised (soft), or one-hot at the top class (hard)."""
    # compared in float32, as predictions are stored: a stored 0.9 passes a threshold of 0.9
    tops = np.asarray(probs, dtype=np.float32).max(axis=1)
    chosen = np.flatnonzero(tops >= np.float32(threshold))
    probs = np.asarray(probs, dtype=np.float64)
    if soft:
        rows = probs[chosen] / probs[chosen].sum(axis=1, keepdims=True)
    else:
        rows = np.zeros((len(chosen), probs.shape[1]))
        rows[np.arange(len(chosen)), probs[chosen].argmax(axis=1)] = 1.0
    return chosen, rows.astype(np.float32)


def pseudo_labels(
    source: SourceRun,
    *,
    classes: list[int],
    test_paths: Sequence[Path],
    test_ids: Sequence[str],
    threshold: float,
    weight: float,
    soft: bool,
) -> PseudoLabels:
    """The test images `source` predicted with a top probability >= `threshold`; UserError
    naming the run when it predicted other classes or other test images than this run has."""
    test = source.run.test
    check_classes(source, test, classes)
    theirs, ours = [str(i) for i in test.image_ids], [str(i) for i in test_ids]
    if set(theirs) != set(ours):
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        raise UserError(
            f"{source.describe()}: predicted other test images than data/images/test "
            f"({len(theirs)} vs {len(ours)}; not predicted there: {missing[:3]}, not here: "
            f"{extra[:3]}): name a run of this competition's test images"
        )
    path_of = dict(zip(ours, test_paths, strict=True))
    chosen, targets = select(test.probs, threshold=threshold, soft=soft)
    tops = np.asarray(classes)[targets.argmax(axis=1)] if len(chosen) else np.array([], int)
    counts = {int(c): int((tops == c).sum()) for c in classes}
    return PseudoLabels(
        ids=[theirs[i] for i in chosen],
        paths=[Path(path_of[theirs[i]]) for i in chosen],
        targets=targets,
        weight=float(weight),
        per_class=counts,
        provenance=source.provenance(digest(test))
        | {
            "threshold": threshold,
            "weight": weight,
            "soft": soft,
            "images": int(len(chosen)),
            "per_class": {str(label): n for label, n in counts.items()},
        },
    )
