"""Write the submission CSV in the iMaterialist format: `id,predicted`.

In: every test id of test.json, the ensembled probabilities of the images that were downloaded,
and a fallback label for those that were not. Out: one row per test id, in test.json's order,
written atomically.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.fileio import atomic_path
from lib.predictions import Predictions


def predicted_labels(predictions: Predictions) -> dict[int, int]:
    """Image id -> the label id of its most probable class."""
    best = predictions.classes[predictions.probs.argmax(axis=1)]
    return dict(zip(predictions.image_ids.tolist(), best.tolist(), strict=True))


def write_label_submission(path: Path, *, test_ids: Sequence[int], labels: dict[int, int],
                           fallback_label: int) -> int:
    """Write `id,predicted`; ids without a prediction get `fallback_label`. Returns their count."""
    filled = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "predicted"])
        for image_id in test_ids:
            label = labels.get(image_id)
            if label is None:
                label, filled = fallback_label, filled + 1
            writer.writerow([image_id, label])
    return filled


def most_common_label(labels: np.ndarray) -> int:
    values, counts = np.unique(labels, return_counts=True)
    return int(values[counts.argmax()])
