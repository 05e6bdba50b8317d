"""Learning-rate range test (Smith, https://arxiv.org/abs/1506.01186; as fastai's `lr_find`),
bounded, with fastai's valley rule for the suggestion.

In: a model, a training DataLoader, the run's TrainConfig (the optimizer as training builds
it: optimizer, momentum, weight decay, backbone lr multiplier or layer decay, label smoothing),
the lr range and a step cap.
Out: a Sweep (the lrs tried, the raw and smoothed loss at each, why it stopped) and the
suggested lr (`valley`).

Bounds. The lr grows exponentially every step from `start_lr` to `end_lr` over at most one
pass over the data, or `max_steps` if that is less. Cycling the data again lets the model
memorise it: the loss then falls at any lr, and the curve says nothing about the lr (on 111
images an unbounded sweep drove the loss to 5e-6 and suggested a tenth of a good lr). A pass of
fewer than MIN_STEPS batches is too few points to read a curve from: `sweep_steps` raises
TooLittleData before any work. The sweep stops once the smoothed loss is DIVERGE times its
lowest (or not finite): past that point the curve holds no information, only time.

Suggestion: fastai's valley rule (fastai.callback.schedule.valley, its default since 2.4) finds
the longest run of steps over which the smoothed loss keeps falling (the longest decreasing
subsequence); the suggestion is the steepest point of the loss inside it (`suggest_lr`: the
valley's middle, fastai's pick, lands among the tiny lrs of a short sweep). The steepest
slope over the whole curve, the older rule, picks a single point of a noisy derivative wherever
the noise is largest; inside the valley the loss is known to fall over a long stretch, and its
steepest point is where training makes the most progress per step, before the loss turns up.

Smoothing: a centred moving average of the raw losses (SMOOTH_WINDOW steps), not fastai's
exponential average: a one-pass sweep has few steps per decade of lr, and an exponential
average lags by about 1/(1 - beta) steps, which shifts the whole curve, and the suggestion,
to higher lrs. Divergence is checked on a trailing average while the sweep runs. The model is
trained in place: build a fresh one for real training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.common.errors import UserError
from lib.train.device import autocast, prepare_model, to_device
from lib.train.optim import make_optimizer, parameter_groups, set_lr

if TYPE_CHECKING:  # the sweep reads a config; it runs no training loop
    from lib.train.loop import TrainConfig

MIN_STEPS = 20  # fewer points than this cannot show a valley (about 4 per decade of lr)
DIVERGE = 4.0  # stop once the smoothed loss is this many times its lowest (as fastai)
SMOOTH_WINDOW = 5  # steps of the centred moving average


class TooLittleData(UserError):
    """One pass over the data is too few steps for a sweep to tell anything."""


@dataclass
class Sweep:
    lrs: list[float]
    losses: list[float]  # the loss of each step's batch, before the step
    steps: int  # the steps planned: min(one pass, max_steps)
    diverged: bool  # stopped early: the loss blew up

    @property
    def smoothed(self) -> list[float]:
        return smooth(self.losses)


def sweep_steps(batches_per_pass: int, max_steps: int, *, images: int, batch_size: int) -> int:
    """min(one pass, max_steps); TooLittleData when that is fewer than MIN_STEPS."""
    if max_steps < MIN_STEPS:
        raise TooLittleData(
            f"lr_find: --max-steps {max_steps} is fewer than the {MIN_STEPS} "
            f"steps a sweep needs; allowed: an integer >= {MIN_STEPS}"
        )
    steps = min(batches_per_pass, max_steps)
    if steps < MIN_STEPS:
        raise TooLittleData(
            f"lr_find: the data is too small to tell: one pass over {images} training images "
            f"is {batches_per_pass} steps of batch_size {batch_size}, fewer than the "
            f"{MIN_STEPS} a sweep needs to tell a good lr from a bad one (a second pass would "
            "measure memorising, not the lr); keep the default lr, or compare a few with "
            "`dvc exp run --queue -S 'lr=...'`"
        )
    return steps


def lr_sweep(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    start_lr: float,
    end_lr: float,
    max_steps: int,
    config: TrainConfig,
    diverge: float = DIVERGE,
) -> Sweep:
    """Train on one pass of `loader` at most (and `max_steps` at most), the head's lr growing
    from start_lr to end_lr (the backbone's scaled as in training); stop at divergence."""
    steps = sweep_steps(
        len(loader), max_steps, images=len(loader.dataset), batch_size=loader.batch_size or 1
    )
    model = prepare_model(model, device)
    opt = make_optimizer(
        parameter_groups(
            model,
            weight_decay=config.weight_decay,
            backbone_lr_mult=config.backbone_lr_mult,
            layer_decay=config.layer_decay,
        ),
        name=config.optimizer,
        lr=start_lr,
        momentum=config.momentum,
    )
    lrs: list[float] = []
    losses: list[float] = []
    best, diverged = math.inf, False
    model.train()
    batches = iter(loader)
    for step in tqdm(range(steps), desc="lr sweep", unit="step"):
        images, targets = next(batches)  # steps <= len(loader): never a second pass
        lr = start_lr * (end_lr / start_lr) ** (step / max(steps - 1, 1))
        set_lr(opt, lr, 1.0)
        images, targets = to_device(images, device), targets.to(device)
        with autocast(device):
            loss = nn.functional.cross_entropy(
                model(images).float(), targets, label_smoothing=config.label_smoothing
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lrs.append(lr)
        losses.append(loss.item())
        recent = float(np.mean(losses[-SMOOTH_WINDOW:]))
        best = min(best, recent)
        if not math.isfinite(recent) or recent > diverge * best:
            diverged = True
            break
    return Sweep(lrs=lrs, losses=losses, steps=steps, diverged=diverged)


def smooth(losses: list[float], window: int = SMOOTH_WINDOW) -> list[float]:
    """Centred moving average (shorter windows at the ends); a non-finite loss stays so."""
    values = np.asarray(losses, dtype=np.float64)
    half = window // 2
    out = []
    for i in range(len(values)):
        part = values[max(i - half, 0) : i + half + 1]
        out.append(float(part.mean()) if np.isfinite(part).all() else math.inf)
    return out


def valley(lrs: list[float], losses: list[float]) -> tuple[float, int, int]:
    """fastai's valley rule: the longest decreasing subsequence of the (smoothed) losses runs
    from index `start` to `end`; the suggestion is the lr halfway along it. Out: (lr, start,
    end)."""
    n = len(losses)
    if n == 0:
        raise ValueError("no losses to suggest an lr from")
    longest = [1] * n  # length of the longest decreasing subsequence ending at i
    first = list(range(n))  # where that subsequence starts
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i], first[i] = longest[j] + 1, first[j]
        if longest[i] > longest[end]:
            end = i
    start = first[end]
    third = (end - start) / 3
    index = start + int(third) + int(third / 2)
    return float(lrs[index]), start, end


def suggest_lr(sweep: Sweep) -> float:
    """Where the smoothed loss falls fastest (per unit of log lr) inside the valley. A one-pass
    sweep has few points and a long, slow fall at tiny lrs, so the valley's middle alone lands
    among them (1.3e-4 on the demo, which 3e-3 trains well); its steepest point does not, and
    the valley keeps it off a noisy slope outside the stretch where the loss really falls."""
    smoothed = sweep.smoothed
    _, start, end = valley(sweep.lrs, smoothed)
    if end - start < 2:
        return float(sweep.lrs[start])
    slopes = np.gradient(np.array(smoothed[start : end + 1]), np.log10(sweep.lrs[start : end + 1]))
    return float(sweep.lrs[start + int(np.argmin(slopes))])
