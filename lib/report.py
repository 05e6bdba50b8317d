"""What the out-of-fold predictions say per class and per image, for `dvc plots show`.

In: OOF probabilities, the true column of each row, the class label ids and their names (from
the classes file, or the label ids themselves). Out:
- per_class_table: images, accuracy, top-3 accuracy, mean probability of the true class and
  the class it is most often mistaken for, one row per class (worst first);
- confusion_frame: one row per image (actual, predicted names), which DVC's `confusion`
  template counts into a matrix;
- worst_mistakes + top_losses_grid: the wrong predictions with the highest log loss, drawn as
  an image grid captioned with the true and the predicted class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lib.ensemble import top_k_hits
from lib.figures import image_grid
from lib.images import load_rgb_array
from lib.submission import class_names


def per_class_table(probs: np.ndarray, columns: np.ndarray, classes: np.ndarray,
                    names: dict[int, str] | None = None) -> pd.DataFrame:
    predicted = probs.argmax(axis=1)
    top3_hits = top_k_hits(probs, columns, 3)
    labels = class_names(classes, names)
    rows = []
    for c, (label, name) in enumerate(zip(classes, labels, strict=True)):
        mine = columns == c
        n = int(mine.sum())
        wrong = predicted[mine & (predicted != c)]
        confused = (labels[int(np.bincount(wrong).argmax())] if len(wrong) else "")
        rows.append({"label_id": int(label), "name": name, "images": n,
                     "accuracy": float((predicted[mine] == c).mean()) if n else float("nan"),
                     "top3_accuracy": float(top3_hits[mine].mean()) if n else float("nan"),
                     "mean_true_prob": float(probs[mine, c].mean()) if n else float("nan"),
                     "most_confused_with": confused})
    return (pd.DataFrame(rows).sort_values(["accuracy", "label_id"], kind="stable")
            .reset_index(drop=True))


def confusion_frame(probs: np.ndarray, columns: np.ndarray, classes: np.ndarray,
                    names: dict[int, str] | None = None,
                    image_ids: np.ndarray | None = None) -> pd.DataFrame:
    labels = np.array(class_names(classes, names), dtype=object)
    frame = pd.DataFrame({"actual": labels[columns], "predicted": labels[probs.argmax(axis=1)]})
    if image_ids is not None:
        frame.insert(0, "image_id", image_ids)
    return frame


def worst_mistakes(probs: np.ndarray, columns: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k wrong predictions with the lowest probability on the true class."""
    true_prob = probs[np.arange(len(columns)), columns]
    wrong = np.flatnonzero(probs.argmax(axis=1) != columns)
    return wrong[np.argsort(true_prob[wrong], kind="stable")][:k]


def top_losses_grid(path: Path, *, image_paths: Sequence[Path], probs: np.ndarray,
                    columns: np.ndarray, classes: np.ndarray,
                    names: dict[int, str] | None = None, k: int = 32, cols: int = 8) -> int:
    """Draw the k worst mistakes (image_paths: one per row of probs). Returns how many."""
    labels = class_names(classes, names)
    rows = worst_mistakes(probs, columns, k)
    images, captions = [], []
    for row in rows:
        predicted = int(probs[row].argmax())
        images.append(load_rgb_array(image_paths[row]))
        captions.append(f"true {labels[columns[row]]} {probs[row, columns[row]]:.2f}\n"
                        f"pred {labels[predicted]} {probs[row, predicted]:.2f}")
    image_grid(images, captions, path, cols=cols, cell=128)
    return len(rows)
