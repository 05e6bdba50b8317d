"""Learning-rate range test (Smith, https://arxiv.org/abs/1506.01186; as in fastai).

In: a model, a training DataLoader, the optimizer settings and the sweep (start and end lr,
number of steps). Out: the learning rates tried, the smoothed loss at each, and a suggested lr:
the point of steepest descent of the smoothed loss, before its minimum. The lr grows
exponentially every step; the sweep stops early once the loss diverges (4x its best). The model
is trained in place: build a fresh one for real training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.train.device import autocast, prepare_model, to_device
from lib.train.optim import make_optimizer, parameter_groups, set_lr


def lr_sweep(model: nn.Module, loader: DataLoader, *, device: torch.device, start_lr: float,
             end_lr: float, steps: int, optimizer: str, weight_decay: float,
             momentum: float = 0.9, beta: float = 0.9,
             diverge: float = 4.0) -> tuple[list[float], list[float]]:
    model = prepare_model(model, device)
    opt = make_optimizer(parameter_groups(model, weight_decay=weight_decay), name=optimizer,
                         lr=start_lr, momentum=momentum)
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    batches: Iterator[Any] = iter(())
    model.train()
    for step in tqdm(range(steps), desc="lr sweep", unit="step"):
        try:
            images, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, targets = next(batches)
        lr = start_lr * (end_lr / start_lr) ** (step / max(steps - 1, 1))
        set_lr(opt, lr, 1.0)
        images, targets = to_device(images, device), targets.to(device)
        with autocast(device):
            loss = nn.functional.cross_entropy(model(images).float(), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Exponential moving average with bias correction, so the first steps are not ~0.
        average = beta * average + (1 - beta) * loss.item()
        smoothed = average / (1 - beta ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > diverge * best:
            break
    return lrs, losses


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest (per unit of log lr), before its minimum."""
    lowest = int(np.nanargmin(losses))
    if lowest < 2:
        return lrs[lowest]
    slopes = np.gradient(np.array(losses[: lowest + 1]), np.log10(lrs[: lowest + 1]))
    return float(lrs[int(np.argmin(slopes))])
