"""What finished runs teach a fold's training set: pseudo-labelled test images and distilled
targets, joined to the fold's labelled training images.

In: the run's TrainConfig (pseudo_from, pseudo_threshold, pseudo_weight, pseudo_soft,
distill_from, distill_alpha), the folds table, the fold, the test images folder and the DVC
project root.
Out: Teaching, whose `training_set` turns the fold's labelled training dataset into one whose
items are (image, target row) with each row summing to the image's weight in the loss (1 for a
labelled image, pseudo_weight for a pseudo-labelled one; lib.train.mix.soft_cross_entropy then
weights each image's loss by it); and the provenance the checkpoint records (the runs, their
commits and digests of the predictions and images read, the counts per class).

Only training sets are changed: validation sets stay the labelled held-out images, so OOF
scores stay out of fold. With neither param set, the training set is returned unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from lib.common.images import list_test_images
from lib.train.data import ImageDataset
from lib.train.distill import check_same_folds, distill_targets
from lib.train.distill import provenance as distill_provenance
from lib.train.pseudo import PseudoLabels, pseudo_labels
from lib.train.source_run import SourceRun, check_classes, is_set, read_source_run

if TYPE_CHECKING:  # the teaching params are read from the config; no training loop runs here
    from lib.train.loop import TrainConfig

log = logging.getLogger(__name__)


class SoftTargetDataset(ImageDataset):
    """Images with one target row each (class probabilities times the image's weight in the
    loss); `targets` keeps each row's top class, for class balancing."""

    def __init__(
        self,
        paths: Sequence[Path],
        rows: np.ndarray,
        transform,
        decode_size: int | None = None,
    ):
        rows = np.asarray(rows, dtype=np.float32)
        super().__init__(paths, rows.argmax(axis=1).tolist(), transform, decode_size)
        self.rows = torch.from_numpy(rows)

    # a target row where the base class yields a class index: the loss takes either
    def __getitem__(  # type: ignore[override]
        self, item: int | tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image, _ = super().__getitem__(item)
        return image, self.rows[item[0] if isinstance(item, tuple) else item]


@dataclass(frozen=True)
class Teaching:
    pseudo: PseudoLabels | None = None
    distill: SourceRun | None = None
    alpha: float = 1.0

    def __bool__(self) -> bool:
        return self.pseudo is not None or self.distill is not None

    def training_set(
        self, labelled: ImageDataset, rows: pd.DataFrame, *, classes: list[int]
    ) -> ImageDataset:
        """The fold's training dataset (`labelled`, made from folds.csv `rows`) with distilled
        targets and the pseudo-labelled images added; unchanged when there is nothing to add."""
        if not self:
            return labelled
        if self.distill is not None:
            targets = distill_targets(self.distill, rows, classes=classes, alpha=self.alpha)
        else:
            targets = np.eye(len(classes), dtype=np.float32)[labelled.targets]
        paths = list(labelled.paths)
        if self.pseudo is not None and len(self.pseudo):
            paths += self.pseudo.paths
            targets = np.concatenate([targets, self.pseudo.targets * self.pseudo.weight])
        return SoftTargetDataset(paths, targets, labelled.transform, labelled.decode_size)

    def provenance(self) -> dict:
        """The checkpoint's record of its teachers (nothing when there are none); part of the
        resume key, so a resumed run had the same ones."""
        found: dict = {}
        if self.pseudo is not None:
            found["pseudo"] = self.pseudo.provenance | {
                "images_sha256": self.pseudo.images_digest()
            }
        if self.distill is not None:
            found["distill"] = distill_provenance(self.distill, alpha=self.alpha)
        return found


def load_teaching(
    config: TrainConfig,
    *,
    folds: pd.DataFrame,
    fold: int,
    test_dir: Path,
    root: Path | str = ".",
    predictions_dir: str = "predictions",
) -> Teaching:
    """The runs the config's teaching params name, read and checked against this run's classes,
    test images and folds before any training (UserError naming the run and what differs)."""
    classes = sorted(int(label) for label in set(folds["label"]))
    pseudo = distill = None
    if is_set(config.pseudo_from):
        source = read_source_run(
            "pseudo_from", str(config.pseudo_from), root=root, predictions_dir=predictions_dir
        )
        test_paths, test_ids = list_test_images(test_dir)
        pseudo = pseudo_labels(
            source,
            classes=classes,
            test_paths=test_paths,
            test_ids=test_ids,
            threshold=config.pseudo_threshold,
            weight=config.pseudo_weight,
            soft=config.pseudo_soft,
        )
        log.log(
            logging.INFO if len(pseudo) else logging.WARNING,
            "%s: %d of %d test images at a top probability >= %s join the training set",
            source.describe(),
            len(pseudo),
            len(test_ids),
            config.pseudo_threshold,
        )
    if is_set(config.distill_from):
        distill = read_source_run(
            "distill_from", str(config.distill_from), root=root, predictions_dir=predictions_dir
        )
        check_classes(distill, distill.run.oof, classes)
        check_same_folds(distill, folds, fold=fold)
    return Teaching(pseudo=pseudo, distill=distill, alpha=config.distill_alpha)
