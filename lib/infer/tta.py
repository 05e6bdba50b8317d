"""Test-time augmentation: class probabilities merged over several views of each batch.

In: a model, a DataLoader of normalised square images and a list of views from `tta_views`.
Out: float32 probabilities (n_images, n_classes), one softmax per view merged by their mean
(softmax first, so no view dominates through its logit scale) or their geometric mean (the
softmax of the mean log-probabilities: a view that rules a class out counts more).

The levels (flip6 is the 12-view TTA of the iMaterialist 2018 winners):
- none: the image as the evaluation transform gives it (img_size square), 1 view;
- flip: + its mirror image, 2 views;
- flip5: the loader resizes to img_size / crop, and the views are 5 img_size crops (centre
  and 4 corners) and their mirrors, 10 views (the classic ten-crop);
- flip6: flip5 + the full image shrunk to img_size, and its mirror, 12 views.
`scales` (e.g. [1.0, 1.15]) repeats every view resized by each factor (multi-scale).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.infer.merge import MERGES
from lib.train.device import autocast, to_device

TTA_LEVELS = ("none", "flip", "flip5", "flip6")
CROP_LEVELS = ("flip5", "flip6")  # the levels that add crops of a larger load
View = Callable[[torch.Tensor], torch.Tensor]


def load_size(img_size: int, *, tta: str, crop: float) -> int:
    """The square size the loader should resize images to: larger than img_size for the
    crop levels, so every crop is img_size pixels without being resampled."""
    if tta in CROP_LEVELS:
        return max(round(img_size / crop), img_size)
    return img_size


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _offset(where: str, total: int, size: int) -> int:
    return {"start": 0, "centre": (total - size) // 2, "end": total - size}[where]


def _crop(top: str, left: str, size: int) -> View:
    """A size x size window at the start/centre/end of the rows and of the columns."""

    def view(x: torch.Tensor) -> torch.Tensor:
        y, z = _offset(top, x.shape[-2], size), _offset(left, x.shape[-1], size)
        return x[..., y : y + size, z : z + size]

    return view


def _mirror(view: View) -> View:
    return lambda x: torch.flip(view(x), dims=[-1])


def _scaled(view: View, size: int) -> View:
    return lambda x: _resize(view(x), size)


def tta_views(
    tta: str, *, img_size: int, crop: float = 0.875, scales: Sequence[float] = (1.0,)
) -> list[tuple[str, View]]:
    """Named views for a TTA level. Each view takes a batch at `load_size(...)` and returns
    it at img_size (times the scale, for multi-scale)."""
    if tta not in TTA_LEVELS:
        raise ValueError(f"tta must be one of {TTA_LEVELS}, not {tta!r}")
    # none/flip: the loader already gives img_size images; flip6 shrinks the larger load.
    base: list[tuple[str, View]] = [("full", lambda x: x)]
    if tta == "flip6":
        base = [("full", lambda x: _resize(x, img_size))]
    if tta in CROP_LEVELS:
        crops = [
            ("centre", "centre", "centre"),
            ("top-left", "start", "start"),
            ("top-right", "start", "end"),
            ("bottom-left", "end", "start"),
            ("bottom-right", "end", "end"),
        ]
        windows = [(name, _crop(top, left, img_size)) for name, top, left in crops]
        base = windows if tta == "flip5" else base + windows
    if tta != "none":
        base = base + [(f"{name}+flip", _mirror(view)) for name, view in base]
    views = []
    for scale in scales:
        size = max(round(img_size * scale), 1)
        for name, view in base:
            views.append(
                (name, view) if size == img_size else (f"{name}@{scale:g}", _scaled(view, size))
            )
    return views


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    views: Sequence[tuple[str, View]],
    merge: str = "mean",
    desc: str = "predict",
) -> np.ndarray:
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, not {merge!r}")
    model.eval()
    batches = []
    for images, _ in tqdm(loader, desc=f"{desc} ({len(views)} views)", leave=False, unit="batch"):
        images = to_device(images, device)
        total = None
        for _, view in views:
            with autocast(device):
                logits = model(view(images)).float()
            # geomean: accumulate log-probabilities; their mean's softmax is the normalised
            # geometric mean of the views' probabilities.
            part = torch.softmax(logits, 1) if merge == "mean" else torch.log_softmax(logits, 1)
            total = part if total is None else total + part
        merged = total / len(views) if merge == "mean" else torch.softmax(total / len(views), 1)
        batches.append(merged.cpu().numpy())  # float32: the softmax of .float() logits
    n_classes = model.get_classifier().out_features
    return np.concatenate(batches) if batches else np.zeros((0, n_classes), np.float32)
