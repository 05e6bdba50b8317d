"""Test-time augmentation: class probabilities averaged over views of each batch.

In: a model, a DataLoader of normalised images and a TTA level ("none": the image as is;
"flip": plus its mirror image). Out: float32 probabilities (n_images, n_classes), the softmax of
each view averaged (softmax first, then mean, so no view dominates through its logit scale).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.device import autocast, to_device

View = Callable[[torch.Tensor], torch.Tensor]
TTA_VIEWS: dict[str, list[View]] = {
    "none": [lambda x: x],
    "flip": [lambda x: x, lambda x: torch.flip(x, dims=[-1])],
}


@torch.no_grad()
def predict_probs(model: nn.Module, loader: DataLoader, *, device: torch.device,
                  tta: str) -> np.ndarray:
    views = TTA_VIEWS[tta]
    model.eval()
    batches = []
    for images, _ in tqdm(loader, desc=f"predict (tta={tta})", leave=False, unit="batch"):
        images = to_device(images, device)
        total = None
        for view in views:
            with autocast(device):
                probs = torch.softmax(model(view(images)).float(), dim=1)
            total = probs if total is None else total + probs
        batches.append((total / len(views)).cpu().numpy())
    n_classes = model.get_classifier().out_features
    return np.concatenate(batches) if batches else np.zeros((0, n_classes), np.float32)
