"""A model made ready to predict: its device, its TTA views and how images are fed to it.

In: a model, its checkpoint (image size, mean/std), the device, the TTA settings (level, merge,
crop, scales) and the speed knobs (batch size, loader processes). Out: an Inference whose
`probs(dataset, name)` gives the TTA probabilities (float32, one row per image) and prints one
throughput line. The one place where a checkpoint becomes a predictor: predict@k, predicting a
folder and the Kaggle bundle's notebook all go through it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lib.infer.tta import View, load_size, predict_probs, tta_views
from lib.train.data import ImageDataset, build_transforms, decode_size
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
        loader = inference_loader(
            dataset, batch_size=self.batch_size, device=self.device, workers=self.workers
        )
        start = time.perf_counter()
        probs = predict_probs(
            self.model, loader, device=self.device, views=self.views, merge=self.merge, desc=name
        )
        seconds = max(time.perf_counter() - start, 1e-9)
        print(
            f"{name}: {len(dataset)} images x {len(self.views)} views (tta={self.tta}, "
            f"{self.merge}) in {seconds:.1f} s: {len(dataset) / seconds:.0f} images/s, "
            f"{len(dataset) * len(self.views) / seconds:.0f} views/s on {self.device.type}",
            flush=True,
        )
        return probs


def prepare_inference(
    model: nn.Module,
    checkpoint: dict,
    *,
    device: torch.device,
    tta: str,
    merge: str,
    crop: float,
    scales: Sequence[float],
    batch_size: int,
    workers: int | str,
) -> Inference:
    img_size = checkpoint["img_size"]
    size = load_size(img_size, tta=tta, crop=crop)
    # JPEGs decoded at reduced size as training's validation decodes them: the model is scored
    # and used on the pixels it was checked on, and large photos decode faster
    return Inference(
        model=prepare_model(model, device),
        device=device,
        views=tta_views(tta, img_size=img_size, crop=crop, scales=scales),
        transform=build_transforms(
            img_size=size, mean=checkpoint["mean"], std=checkpoint["std"], train=False
        ),
        decoded=decode_size(size, train=False),
        tta=tta,
        merge=merge,
        batch_size=batch_size,
        workers=workers,
    )
