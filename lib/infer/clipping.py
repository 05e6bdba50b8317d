"""Clip probabilities before they are submitted, and the bounds that allow it.

In: probabilities (rows x classes) and the clip bounds (clip_low, clip_high). Out: each row
clipped to [low, high] and renormalised so it still sums to 1; clipping caps the log-loss cost
of a confident mistake at about -log(low). The bounds must leave room around the uniform
1/n_classes (low < 1/n < high), else every row would be clipped flat: ParamError naming both.
"""

from __future__ import annotations

import numpy as np

from lib.common.errors import ParamError


def check_clip_bounds(*, low: float, high: float, n_classes: int) -> None:
    """ParamError (naming clip_low and clip_high) unless low < 1/n_classes < high: with
    low >= 1/n every probability is raised to at least the uniform one, with high <= 1/n
    lowered to at most it, and after renormalising every row is uniform."""
    if not low < 1 / n_classes < high:
        raise ParamError(
            f"clip_low = {low} and clip_high = {high} are not allowed with "
            f"{n_classes} classes: expected clip_low < 1/{n_classes} = "
            f"{1 / n_classes:.4g} < clip_high (else every row would be clipped "
            f"to uniform; 0.01/{n_classes} = {0.01 / n_classes:.2g} is a good "
            "clip_low)"
        )


def clip_probs(probs: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """Each row clipped to [low, high] and renormalised; bounds as `check_clip_bounds` wants."""
    check_clip_bounds(low=low, high=high, n_classes=probs.shape[1])
    clipped = np.clip(probs.astype(np.float64), low, high)
    return clipped / clipped.sum(axis=1, keepdims=True)
