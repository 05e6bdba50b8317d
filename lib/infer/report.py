"""What the out-of-fold predictions say per class and per image: tables for `dvc plots show`
and PNGs to open without a browser.

In: OOF probabilities, the true column of each row, the class label ids and their names (from
the classes file, or the label ids themselves). Out:
- per_class_table: images, accuracy, top-3 accuracy, mean probability of the true class and
  the class it is most often mistaken for, one row per class (worst first);
- confusion_frame: one row per image (actual, predicted names), which DVC's `confusion`
  template counts into a matrix;
- confusion_counts + confusion_figures: the matrix itself, drawn with class names twice: as
  counts and normalised per true class (each row sums to 100%);
- worst_mistakes + top_losses_grid: the wrong predictions with the highest log loss, drawn as
  an image grid captioned with the image id, its loss, and the true and the predicted class
  with their probabilities;
- write_oof_reports: all of them for an OOF ensemble.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lib.common.figures import heatmap, image_grid
from lib.common.fileio import atomic_path
from lib.common.images import load_rgb_array
from lib.infer.metrics import target_columns, top_k_hits
from lib.infer.predictions import Predictions
from lib.infer.submission import class_names

log = logging.getLogger(__name__)


def per_class_table(
    probs: np.ndarray, columns: np.ndarray, classes: np.ndarray, names: dict[int, str] | None = None
) -> pd.DataFrame:
    predicted = probs.argmax(axis=1)
    top3_hits = top_k_hits(probs, columns, 3)
    labels = class_names(classes, names)
    rows = []
    for c, (label, name) in enumerate(zip(classes, labels, strict=True)):
        mine = columns == c
        n = int(mine.sum())
        wrong = predicted[mine & (predicted != c)]
        confused = labels[int(np.bincount(wrong).argmax())] if len(wrong) else ""
        rows.append(
            {
                "label_id": int(label),
                "name": name,
                "images": n,
                "accuracy": float((predicted[mine] == c).mean()) if n else float("nan"),
                "top3_accuracy": float(top3_hits[mine].mean()) if n else float("nan"),
                "mean_true_prob": float(probs[mine, c].mean()) if n else float("nan"),
                "most_confused_with": confused,
            }
        )
    return (
        pd.DataFrame(rows)
        .sort_values(["accuracy", "label_id"], kind="stable")
        .reset_index(drop=True)
    )


def confusion_frame(
    probs: np.ndarray,
    columns: np.ndarray,
    classes: np.ndarray,
    names: dict[int, str] | None = None,
    image_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    labels = np.array(class_names(classes, names), dtype=object)
    frame = pd.DataFrame({"actual": labels[columns], "predicted": labels[probs.argmax(axis=1)]})
    if image_ids is not None:
        frame.insert(0, "image_id", image_ids)
    return frame


def confusion_counts(probs: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """counts[i, j]: images of true column i predicted as column j."""
    n = probs.shape[1]
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (columns, probs.argmax(axis=1)), 1)
    return counts


def confusion_figures(
    counts: np.ndarray, labels: list[str], *, counts_png: Path, normalized_png: Path
) -> None:
    """The confusion matrix twice, true classes down, predicted across: counts (shaded by the
    row share, so a rare class's mistakes show too), and each row as percentages."""
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    n = len(labels)
    heatmap(
        share,
        counts_png,
        row_labels=labels,
        col_labels=labels,
        texts=[[str(int(counts[i, j])) for j in range(n)] for i in range(n)],
        title=f"OOF confusion matrix: counts ({int(counts.sum())} images)",
        x_label="predicted class",
        y_label="true class",
    )
    heatmap(
        share,
        normalized_png,
        row_labels=labels,
        col_labels=labels,
        texts=[
            [f"{100 * share[i, j]:.0f}" if counts[i, j] else "" for j in range(n)] for i in range(n)
        ],
        title="OOF confusion matrix: % of each true class (rows sum to 100)",
        x_label="predicted class",
        y_label="true class",
    )


def worst_mistakes(probs: np.ndarray, columns: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k wrong predictions with the lowest probability on the true class."""
    true_prob = probs[np.arange(len(columns)), columns]
    wrong = np.flatnonzero(probs.argmax(axis=1) != columns)
    return wrong[np.argsort(true_prob[wrong], kind="stable")][:k]


def top_losses_grid(
    path: Path,
    *,
    image_paths: Sequence[Path],
    probs: np.ndarray,
    columns: np.ndarray,
    classes: np.ndarray,
    names: dict[int, str] | None = None,
    image_ids: Sequence | None = None,
    k: int = 32,
    cols: int = 8,
) -> int:
    """Draw the k worst mistakes (image_paths, image_ids: one per row of probs), each
    captioned with its id and loss (-ln of the true class's probability), the true class and
    its probability, the predicted class and its. Returns how many."""
    labels = class_names(classes, names)
    rows = worst_mistakes(probs, columns, k)
    images, captions = [], []
    for row in rows:
        predicted, truth = int(probs[row].argmax()), int(columns[row])
        loss = -np.log(max(float(probs[row, truth]), 1e-15))
        name = f"id {image_ids[row]}" if image_ids is not None else Path(image_paths[row]).stem
        images.append(load_rgb_array(image_paths[row]))
        captions.append(
            f"{name}  loss {loss:.2f}\n"
            f"true: {labels[truth]} ({probs[row, truth]:.2f})\n"
            f"pred: {labels[predicted]} ({probs[row, predicted]:.2f})"
        )
    image_grid(images, captions, path, cols=min(cols, max(len(rows), 1)), cell=128)
    return len(rows)


def write_oof_reports(
    oof: Predictions,
    names: dict[int, str] | None,
    *,
    folds: pd.DataFrame,
    images_dir: Path,
    per_class_csv: Path,
    confusion_csv: Path,
    top_losses_png: Path,
    confusion_png: Path,
    confusion_normalized_png: Path,
) -> pd.DataFrame:
    """The per-class table, the confusion rows and figures, and the top-losses grid of OOF
    predictions; `folds` (data/folds.csv) gives each row's image path. Out: the per-class
    table."""
    columns = target_columns(oof.classes, oof.targets)
    confusion_figures(
        confusion_counts(oof.probs, columns),
        class_names(oof.classes, names),
        counts_png=confusion_png,
        normalized_png=confusion_normalized_png,
    )
    table = per_class_table(oof.probs, columns, oof.classes, names)
    with atomic_path(per_class_csv, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(confusion_csv, suffix=".csv") as tmp:
        confusion_frame(oof.probs, columns, oof.classes, names, oof.image_ids).to_csv(
            tmp, index=False
        )
    path_of = {
        (str(s), str(i)): p
        for s, i, p in zip(folds["split"], folds["image_id"], folds["path"], strict=True)
    }
    paths = [
        images_dir / path_of[(str(s), str(i))]
        for s, i in zip(oof.splits, oof.image_ids, strict=True)
    ]
    shown = top_losses_grid(
        top_losses_png,
        image_paths=paths,
        probs=oof.probs,
        columns=columns,
        classes=oof.classes,
        names=names,
        image_ids=oof.image_ids,
    )
    worst, best = table.iloc[0], table.iloc[-1]
    log.info(
        "per-class accuracy: worst %s %.3f (%d images), best %s %.3f; %d worst OOF "
        "mistakes drawn in %s",
        worst["name"],
        worst["accuracy"],
        worst["images"],
        best["name"],
        best["accuracy"],
        shown,
        top_losses_png,
    )
    return table
