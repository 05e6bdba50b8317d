"""One fold's TTA predictions: its model on its held-out images (out-of-fold), on the holdout
images when there are any, and on the test images.

In: a checkpoint (lib.train.checkpoint: weights, classes, mean/std, image size, training params),
the folds table, the fold, the images folder and the test images with their ids, the TTA settings,
and the speed knobs. Out: {"oof", "holdout" (when any), "test"} -> Predictions, each with the
class prior the model was trained under (uniform when training balanced the classes), and one
throughput line per split printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lib.infer.inference import Inference
from lib.infer.predictions import Predictions, training_prior
from lib.prepare.folds import holdout_rows, split_fold
from lib.train.data import ImageDataset, rows_dataset


def predict_fold(
    inference: Inference,
    checkpoint: dict,
    *,
    folds: pd.DataFrame,
    fold: int,
    images_dir: Path,
    test_paths: Sequence[Path],
    test_ids: Sequence[str],
) -> dict[str, Predictions]:
    classes = np.array(checkpoint["classes"])
    train_rows, oof_rows = split_fold(folds, fold)
    # A class-balanced sampler or loss weights train the model under a uniform prior.
    prior = training_prior(
        train_rows["label"].to_numpy(),
        classes,
        balanced=checkpoint["params"].get("class_balance", "none") != "none",
    )

    def labelled(rows: pd.DataFrame, name: str) -> Predictions:
        dataset = rows_dataset(
            rows,
            images_dir=images_dir,
            classes=None,
            transform=inference.transform,
            decode_size=inference.decoded,
        )
        return Predictions(
            probs=inference.probs(dataset, f"fold {fold} {name}"),
            image_ids=rows["image_id"].to_numpy(),
            classes=classes,
            splits=rows["split"].to_numpy(),
            targets=rows["label"].to_numpy(),
            prior=prior,
        )

    splits = {"oof": labelled(oof_rows, "oof")}
    holdout = holdout_rows(folds)
    if len(holdout):
        splits["holdout"] = labelled(holdout, "holdout")
    test_set = ImageDataset(
        list(test_paths), None, inference.transform, decode_size=inference.decoded
    )
    splits["test"] = Predictions(
        probs=inference.probs(test_set, f"fold {fold} test"),
        image_ids=np.array(test_ids, str),
        classes=classes,
        prior=prior,
    )
    return splits
