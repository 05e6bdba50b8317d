"""One fold's TTA predictions: its model on its held-out images (out-of-fold), on the holdout
images when there are any, and on the test images.

In: a checkpoint (lib.train.checkpoint: weights, classes, mean/std, image size, training params),
the folds table, the fold, the images folder and the test images with their ids, the TTA settings,
and the speed knobs. Out: {"oof", "holdout" (when any), "test"} -> Predictions, each with the
class prior the model was trained under (uniform when training balanced the classes), and one
throughput line per split printed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lib.infer.predictions import Predictions, training_prior
from lib.infer.tta import View, load_size, predict_probs, tta_views
from lib.prepare.folds import holdout_rows, split_fold
from lib.train.data import ImageDataset, build_transforms, decode_size, rows_dataset
from lib.train.device import inference_loader, prepare_model


@dataclass
class Inference:
    """A model ready to predict, with how it is fed."""

    model: nn.Module
    device: torch.device
    views: list[tuple[str, View]]
    transform: Any
    decoded: int | None
    tta: str
    merge: str
    batch_size: int
    workers: int | str

    def probs(self, dataset: ImageDataset, name: str) -> np.ndarray:
        loader = inference_loader(dataset, batch_size=self.batch_size, device=self.device,
                                  workers=self.workers)
        start = time.perf_counter()
        probs = predict_probs(self.model, loader, device=self.device, views=self.views,
                              merge=self.merge, desc=name)
        seconds = max(time.perf_counter() - start, 1e-9)
        print(f"{name}: {len(dataset)} images x {len(self.views)} views (tta={self.tta}, "
              f"{self.merge}) in {seconds:.1f} s: {len(dataset) / seconds:.0f} images/s, "
              f"{len(dataset) * len(self.views) / seconds:.0f} views/s on {self.device.type}",
              flush=True)
        return probs


def prepare_inference(model: nn.Module, checkpoint: dict, *, device: torch.device, tta: str,
                      merge: str, crop: float, scales: Sequence[float], batch_size: int,
                      workers: int | str) -> Inference:
    img_size = checkpoint["img_size"]
    size = load_size(img_size, tta=tta, crop=crop)
    # JPEGs decoded at reduced size as training's validation decodes them: the model is scored
    # and used on the pixels it was checked on, and large photos decode faster
    return Inference(model=prepare_model(model, device), device=device,
                     views=tta_views(tta, img_size=img_size, crop=crop, scales=scales),
                     transform=build_transforms(img_size=size, mean=checkpoint["mean"],
                                                std=checkpoint["std"], train=False),
                     decoded=decode_size(size, train=False), tta=tta, merge=merge,
                     batch_size=batch_size, workers=workers)


def predict_fold(inference: Inference, checkpoint: dict, *, folds: pd.DataFrame, fold: int,
                 images_dir: Path, test_paths: Sequence[Path],
                 test_ids: Sequence[str]) -> dict[str, Predictions]:
    classes = np.array(checkpoint["classes"])
    train_rows, oof_rows = split_fold(folds, fold)
    # A class-balanced sampler or loss weights train the model under a uniform prior.
    prior = training_prior(train_rows["label"].to_numpy(), classes,
                           balanced=checkpoint["params"].get("class_balance", "none") != "none")

    def labelled(rows: pd.DataFrame, name: str) -> Predictions:
        dataset = rows_dataset(rows, images_dir=images_dir, classes=None,
                               transform=inference.transform, decode_size=inference.decoded)
        return Predictions(probs=inference.probs(dataset, f"fold {fold} {name}"),
                           image_ids=rows["image_id"].to_numpy(), classes=classes,
                           splits=rows["split"].to_numpy(), targets=rows["label"].to_numpy(),
                           prior=prior)

    splits = {"oof": labelled(oof_rows, "oof")}
    holdout = holdout_rows(folds)
    if len(holdout):
        splits["holdout"] = labelled(holdout, "holdout")
    test_set = ImageDataset(list(test_paths), None, inference.transform,
                            decode_size=inference.decoded)
    splits["test"] = Predictions(probs=inference.probs(test_set, f"fold {fold} test"),
                                 image_ids=np.array(test_ids, str), classes=classes,
                                 prior=prior)
    return splits
