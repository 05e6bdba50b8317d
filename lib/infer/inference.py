"""A model made ready to predict: its device, its TTA views and how images are fed to it.

In: a model, its checkpoint (image size, mean/std), the device and a PredictConfig: the TTA
settings (level, merge, crop, scales) and the speed knobs (batch size, loader processes), as
params.yaml gives them to predict@k (or a bundle's inference.json). Out: an Inference whose
`probs(dataset, name)` gives the TTA probabilities (float32, one row per image) and prints one
throughput line. The one place where a checkpoint becomes a predictor: predict@k, predicting a
folder and the Kaggle bundle's notebook all go through it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lib.common.params import Config, choice, number, param, scales
from lib.infer.merge import MERGES
from lib.infer.tta import TTA_LEVELS, View, load_size, predict_probs, tta_views
from lib.train.data import ImageDataset, build_transforms, decode_size
from lib.train.device import inference_loader, prepare_model


@dataclass(frozen=True)
class PredictConfig(Config):
    """predict@k's config: the TTA, and the batch size and loader processes, which change only
    the speed of inference (eval mode). Defaults and meaning: params.yaml."""

    tta: str = param(choice(*TTA_LEVELS))
    tta_merge: str = param(choice(*MERGES))
    tta_crop: float = param(number(0.5, strict=True, high=1.0))
    tta_scales: list[float] = param(scales)
    batch_size: int = param(speed=True)
    workers: int | str = param(speed=True)


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
    config: PredictConfig,
) -> Inference:
    img_size = checkpoint["img_size"]
    size = load_size(img_size, tta=config.tta, crop=config.tta_crop)
    # JPEGs decoded at reduced size as training's validation decodes them: the model is scored
    # and used on the pixels it was checked on, and large photos decode faster
    return Inference(
        model=prepare_model(model, device),
        device=device,
        views=tta_views(
            config.tta, img_size=img_size, crop=config.tta_crop, scales=config.tta_scales
        ),
        transform=build_transforms(
            img_size=size, mean=checkpoint["mean"], std=checkpoint["std"], train=False
        ),
        decoded=decode_size(size, train=False),
        tta=config.tta,
        merge=config.tta_merge,
        batch_size=config.batch_size,
        workers=config.workers,
    )
