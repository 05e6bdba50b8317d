"""The file format for probabilities passed between stages.

One `.npz` per fold and split: `probs` float32 (n_images, n_classes), `image_ids` (unicode text,
each id as the competition spells it; files with int64 ids, as earlier runs wrote them, are read as
their decimal text) and `classes` int64 (the label id of each column) beside them, plus, for
out-of-fold files, `splits` (the source split of each row, since ids repeat across splits) and
`targets` (true label ids), and `prior`: the class prior the model was trained under (float64, one
per column; uniform when training balanced the classes), which the ensemble's prior correction
divides out. Row order is never implied: consumers align rows by id (and split).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.common.errors import UserError
from lib.common.fileio import atomic_path, temp_name


@dataclass
class Predictions:
    probs: np.ndarray
    image_ids: np.ndarray
    classes: np.ndarray
    splits: np.ndarray | None = None
    targets: np.ndarray | None = None
    prior: np.ndarray | None = None

    def __post_init__(self) -> None:
        # ids are text everywhere (lib.common.ids): 5001 and "5001" are one id
        self.image_ids = np.asarray(self.image_ids).astype(str)
        n, c = self.probs.shape
        if len(self.image_ids) != n or len(self.classes) != c:
            raise ValueError(
                f"probs {self.probs.shape} do not match {len(self.image_ids)} ids "
                f"and {len(self.classes)} classes"
            )
        if self.prior is not None and len(self.prior) != c:
            raise ValueError(f"prior of {len(self.prior)} classes for {c} columns")


def save_predictions(path: Path, predictions: Predictions) -> None:
    arrays = {
        "probs": predictions.probs.astype(np.float32),
        "image_ids": predictions.image_ids.astype(str),
        "classes": predictions.classes.astype(np.int64),
    }
    if predictions.splits is not None:
        arrays["splits"] = predictions.splits.astype(str)
    if predictions.targets is not None:
        arrays["targets"] = predictions.targets.astype(np.int64)
    if predictions.prior is not None:
        arrays["prior"] = predictions.prior.astype(np.float64)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_fold_predictions(folder: Path, splits: Mapping[str, Predictions]) -> None:
    """Write `<split>.npz` for every split into `folder` as one unit: a reader (or a run killed
    half-way) sees either all the old files or all the new ones, never OOF from one run beside
    test from another. The files are written into a temp folder beside it, then swapped in."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = folder.with_name(temp_name(folder.name))
    staged.mkdir()  # not mkdtemp: the folder gets the mode the umask gives, not 0700
    try:
        for split, predictions in splits.items():
            save_predictions(staged / f"{split}.npz", predictions)
        retired = folder.with_name(temp_name(f"{folder.name}.old"))
        if folder.exists():
            os.replace(folder, retired)
        os.replace(staged, folder)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def load_predictions(path: Path) -> Predictions:
    if not path.is_file():
        raise UserError(f"{path}: predictions not found (did predict run for this fold?)")
    with np.load(path, allow_pickle=False) as data:
        return Predictions(
            probs=data["probs"],
            image_ids=data["image_ids"],
            classes=data["classes"],
            splits=data.get("splits"),
            targets=data.get("targets"),
            prior=data.get("prior"),
        )


def check_test_ids(
    test: Predictions, *, expected: Collection, on_disk: Collection | None, source: str, rerun: str
) -> None:
    """Refuse test predictions made for another test set: ids test.json no longer lists, test
    images on disk that were not predicted, or no test id predicted at all (every row of the
    submission would be a fallback). `on_disk`: ids of the test images present (None: unknown);
    `rerun`: the command that brings the predictions up to date."""
    predicted = {str(i) for i in test.image_ids.tolist()}
    extra = sorted(predicted - {str(i) for i in expected})
    missing = sorted({str(i) for i in on_disk or ()} - predicted)
    problem = None
    if extra or missing:
        problem = (
            f"{len(extra)} ids not in test.json ({_examples(extra)}), {len(missing)} test "
            f"images on disk without a prediction ({_examples(missing)})"
        )
    elif expected and not predicted:
        problem = "no test image has a prediction: every row would be a fallback"
    if problem:
        raise UserError(
            f"{source}: test predictions do not match the current test images: "
            f"{problem}; run `{rerun}`"
        )


def _examples(values: list[str], n: int = 3) -> str:
    return ", ".join(values[:n]) + (", ..." if len(values) > n else "")


def training_prior(
    labels: np.ndarray, classes: np.ndarray, *, balanced: bool = False
) -> np.ndarray:
    """The class prior a model learns from training images with these labels: their frequencies
    over `classes` (a class with no image counts as one, so dividing by the prior stays
    finite), or uniform when training balanced the classes (sampler or loss weights)."""
    if balanced:
        return np.full(len(classes), 1.0 / len(classes))
    column = {int(label): i for i, label in enumerate(classes)}
    counts = np.bincount(
        [column[int(t)] for t in labels if int(t) in column], minlength=len(classes)
    ).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    return counts / counts.sum()
