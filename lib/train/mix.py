"""Mixup and CutMix on a batch, with label smoothing, as soft targets.

In: a batch of images, class indices (or target rows: class probabilities, each row summing to
its image's weight in the loss, as lib.train.teaching gives them), the number of classes, the
probabilities of applying mixup or cutmix to a batch, the Beta(alpha, alpha) parameter and the
label smoothing. Out: the (possibly mixed) images and soft targets whose rows sum to 1 (to the
mixed weights, for target rows), for `soft_cross_entropy`, which weights each image's loss by
its row's sum.
Mixup: https://arxiv.org/abs/1710.09412; CutMix: https://arxiv.org/abs/1905.04899.
"""

from __future__ import annotations

import torch
from torch import nn


def smooth_one_hot(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    return torch.full((len(targets), num_classes), off, device=targets.device).scatter_(
        1, targets.unsqueeze(1), 1.0 - smoothing + off
    )


def target_rows(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Class indices as smoothed one-hot rows; given rows are smoothed alike, each keeping its
    sum (the image's weight in the loss)."""
    if targets.ndim == 1:
        return smooth_one_hot(targets, num_classes, smoothing)
    rows = targets.float()
    return rows * (1.0 - smoothing) + rows.sum(dim=1, keepdim=True) * (smoothing / num_classes)


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_classes: int,
    mixup_prob: float,
    cutmix_prob: float,
    alpha: float,
    smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws from torch's global RNG, which the training loop seeds every epoch."""
    soft = target_rows(targets, num_classes, smoothing)
    draw = torch.rand(1).item()
    if draw >= mixup_prob + cutmix_prob or len(images) < 2:
        return images, soft
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(len(images)).to(images.device)
    if draw < mixup_prob:
        mixed = lam * images + (1 - lam) * images[partner]
    else:
        mixed, lam = _cutmix(images, partner, lam)
    return mixed, lam * soft + (1 - lam) * soft[partner]


def _cutmix(images: torch.Tensor, partner: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    height, width = images.shape[-2:]
    cut_h, cut_w = int(height * (1 - lam) ** 0.5), int(width * (1 - lam) ** 0.5)
    cy, cx = int(torch.randint(height, (1,))), int(torch.randint(width, (1,)))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = images[partner][..., top:bottom, left:right]
    # The real pasted area sets the label weight (the box may be clipped at the border).
    return mixed, 1 - (bottom - top) * (right - left) / (height * width)


def soft_cross_entropy(
    logits: torch.Tensor, soft_targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    log_probs = nn.functional.log_softmax(logits.float(), dim=1)
    if weight is not None:
        log_probs = log_probs * weight
    return -(soft_targets * log_probs).sum(dim=1).mean()
