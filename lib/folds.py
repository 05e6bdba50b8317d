"""Stratified k-fold assignment of the labelled images on disk.

In: the ImageFolder tree written by the download stage (`<split>/<label>/<image_id>.<ext>`),
the splits to pool, k and a seed. Out: a DataFrame with one row per image, sorted by split and
image_id: split, image_id, label, path (relative to the images folder) and fold (0..k-1).
The same inputs give the same folds on every run and machine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedKFold

from lib.errors import UserError
from lib.images import list_images

log = logging.getLogger(__name__)
COLUMNS = ["split", "image_id", "label", "path", "fold"]


def scan_labelled(images_dir: Path, splits: Sequence[str]) -> pd.DataFrame:
    """One row per image of the labelled `splits` found under `images_dir`."""
    rows = []
    for split in splits:
        for path in list_images(images_dir / split):
            label_dir = path.parent.name
            if not (label_dir.isdigit() and path.stem.isdigit()):
                raise UserError(f"{path}: expected <split>/<label>/<image_id>.<ext> with "
                                "integer label and image_id")
            rows.append((split, int(path.stem), int(label_dir),
                         path.relative_to(images_dir).as_posix()))
    if not rows:
        where = ", ".join(str(images_dir / s) for s in splits)
        raise UserError(f"no images found in {where}: run the download stage first")
    frame = pd.DataFrame(rows, columns=["split", "image_id", "label", "path"])
    return frame.sort_values(["split", "image_id"], ignore_index=True)


def assign_folds(images: pd.DataFrame, *, folds: int, seed: int) -> pd.DataFrame:
    """`images` with a `fold` column from a seeded stratified k-fold on `label`."""
    counts = images["label"].value_counts()
    if counts.max() < folds:
        raise UserError(f"folds = {folds} is more than the images of any class "
                        f"(largest class has {counts.max()})")
    small = counts[counts < folds]
    if len(small):
        log.warning("%d classes have fewer images than folds=%d (e.g. label %s with %d); "
                    "some folds hold none of them", len(small), folds, small.index[0],
                    small.iloc[0])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    result = images.copy()
    result["fold"] = -1
    for fold, (_, held_out) in enumerate(splitter.split(result, result["label"])):
        result.loc[held_out, "fold"] = fold
    return result[COLUMNS]


def summarize(folds_frame: pd.DataFrame) -> str:
    """Images per fold and the smallest/largest class count per fold, one line per fold."""
    lines = []
    for fold, part in folds_frame.groupby("fold"):
        per_class = part["label"].value_counts()
        lines.append(f"fold {fold}: {len(part)} images, {per_class.size} classes, "
                     f"{per_class.min()}-{per_class.max()} per class")
    return "\n".join(lines)


def read_folds(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path} not found: run the folds stage first")
    frame = pd.read_csv(path)
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise UserError(f"{path}: missing columns {sorted(missing)}")
    return frame


def split_fold(frame: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows) for `fold`."""
    if fold not in set(frame["fold"]):
        raise UserError(f"fold {fold} is not in folds.csv (folds there: "
                        f"{sorted(set(frame['fold']))}): re-run the folds stage")
    held_out = frame["fold"] == fold
    return frame[~held_out].reset_index(drop=True), frame[held_out].reset_index(drop=True)
