"""Fine-tune a classifier on one fold, resumably.

In: a model, training and validation DataLoaders, a TrainConfig and (optionally) the path of a
resume file. Out: FitResult: one EpochResult per epoch (also sent to a callback, e.g. DVCLive)
and the weights to keep (last epoch or best validation loss; the EMA's when enabled).

Each epoch's randomness (shuffling, augmentation, mixup, dropout) is seeded from (seed, epoch),
and the full state (model, optimizer, schedule, EMA, best weights, history, torch RNG) is saved
after every epoch; a run killed after epoch e and started again resumes at e + 1 and ends with
the same weights as a run that was never interrupted. There is no grad scaler to save: CUDA
runs use bf16 autocast, which needs none.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.device import autocast, prepare_model, to_device
from lib.fileio import atomic_path
from lib.heads import head_parameters
from lib.mix import mix_batch, soft_cross_entropy
from lib.optim import make_optimizer, parameter_groups, set_lr
from lib.schedules import Schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    optimizer: str = "adamw"         # "sgd" | "adamw"
    momentum: float = 0.9            # SGD only
    weight_decay: float = 0.01
    schedule: str = "cosine"         # see lib.schedules
    warmup_epochs: float = 0.5       # linear warm-up, in epochs (may be fractional)
    sgdr_t0: float = 1.0             # SGDR: first cycle, epochs
    sgdr_t_mult: float = 2.0         # SGDR: each cycle this many times longer
    plateau_patience: int = 1        # plateau: epochs without improvement before a cut
    plateau_factor: float = 0.5      # plateau: lr multiplier at each cut
    freeze_epochs: int = 0           # epochs of head-only training first
    backbone_lr_mult: float = 1.0    # backbone lr = lr x this (discriminative lr)
    layer_decay: float = 0.0         # 0 = off; else layer-wise lr decay (overrides the mult)
    label_smoothing: float = 0.0
    mixup: float = 0.0               # probability that a batch is mixed up
    cutmix: float = 0.0              # probability that a batch gets CutMix
    mix_alpha: float = 1.0           # Beta(alpha, alpha) of the mixing weight
    ema: float = 0.0                 # EMA decay of the weights; 0 = off
    keep: str = "last"               # "last" | "best" (lowest validation loss)
    seed: int = 0


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    lr: float
    train_loss: float
    val_loss: float
    val_acc: float
    images_per_s: float
    seconds: float


@dataclass
class FitResult:
    history: list[EpochResult]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    kept_epoch: int = 0


def seed_epoch(seed: int, epoch: int, loader: DataLoader) -> None:
    """Seed everything random in this epoch from (seed, epoch) alone."""
    epoch_seed = seed * 10_007 + epoch
    torch.manual_seed(epoch_seed)
    np.random.seed(epoch_seed % 2**32)
    random.seed(epoch_seed)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed)
    if hasattr(loader.dataset, "reseed"):
        loader.dataset.reseed(epoch_seed % 2**32)


def set_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) everything but the classifier head."""
    head = {id(p) for p in head_parameters(model)}
    for param in model.parameters():
        param.requires_grad_(not frozen or id(param) in head)


def train_one_epoch(model: nn.Module, loader: DataLoader, *, optimizer: torch.optim.Optimizer,
                    schedule: Schedule, first_step: int, config: TrainConfig,
                    num_classes: int, device: torch.device, ema: ModelEmaV3 | None,
                    class_weights: torch.Tensor | None, desc: str) -> tuple[float, int]:
    """Mean training loss over the epoch and the number of images seen."""
    model.train()
    loss_sum, seen = 0.0, 0
    for step, (images, targets) in enumerate(tqdm(loader, desc=desc, leave=False,
                                                  unit="batch"), start=first_step):
        set_lr(optimizer, config.lr, schedule.factor(step))
        images, targets = to_device(images, device), targets.to(device)
        images, soft = mix_batch(images, targets, num_classes=num_classes,
                                 mixup_prob=config.mixup, cutmix_prob=config.cutmix,
                                 alpha=config.mix_alpha, smoothing=config.label_smoothing)
        with autocast(device):
            logits = model(images)
        loss = soft_cross_entropy(logits, soft, class_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(model)
        loss_sum += loss.item() * len(targets)
        seen += len(targets)
    return loss_sum / max(seen, 1), seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on a labelled loader."""
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    for images, targets in loader:
        images, targets = to_device(images, device), targets.to(device)
        with autocast(device):
            logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def fit(model: nn.Module, *, train_loader: DataLoader, val_loader: DataLoader,
        config: TrainConfig, device: torch.device, fold: int, num_classes: int,
        class_weights: torch.Tensor | None = None, resume_path: Path | None = None,
        resume_key: str = "",
        on_epoch: Callable[[EpochResult], None] = lambda result: None) -> FitResult:
    model = prepare_model(model, device)
    optimizer = make_optimizer(
        parameter_groups(model, weight_decay=config.weight_decay,
                         backbone_lr_mult=config.backbone_lr_mult,
                         layer_decay=config.layer_decay),
        name=config.optimizer, lr=config.lr, momentum=config.momentum)
    steps = len(train_loader)
    schedule = Schedule(config.schedule, total_steps=config.epochs * steps, steps_per_epoch=steps,
                        warmup_steps=round(config.warmup_epochs * steps),
                        t0_epochs=config.sgdr_t0, t_mult=config.sgdr_t_mult,
                        plateau_patience=config.plateau_patience,
                        plateau_factor=config.plateau_factor)
    ema = ModelEmaV3(model, decay=config.ema) if config.ema else None
    weights = class_weights.to(device) if class_weights is not None else None
    history: list[EpochResult] = []
    best = {"loss": math.inf, "state": None, "epoch": 0}
    start = _resume(resume_path, resume_key, model, optimizer, schedule, ema, history, best)
    for result in history:
        on_epoch(result)  # replay what an interrupted run logged (its metrics files are gone)

    log.info("%4s %5s %9s %10s %9s %7s %8s %7s", "fold", "epoch", "lr", "train_loss",
             "val_loss", "val_acc", "img/s", "sec")
    for epoch in range(start, config.epochs + 1):
        seed_epoch(config.seed, epoch, train_loader)
        set_frozen(model, epoch <= config.freeze_epochs)
        began = time.perf_counter()
        train_loss, seen = train_one_epoch(
            model, train_loader, optimizer=optimizer, schedule=schedule,
            first_step=(epoch - 1) * steps, config=config, num_classes=num_classes,
            device=device, ema=ema, class_weights=weights, desc=f"fold {fold} epoch {epoch}")
        train_seconds = time.perf_counter() - began
        scored = ema.module if ema is not None else model
        val_loss, val_acc = evaluate(scored, val_loader, device)
        schedule.end_epoch(val_loss)
        result = EpochResult(epoch, optimizer.param_groups[-1]["lr"], train_loss, val_loss,
                             val_acc, seen / train_seconds, time.perf_counter() - began)
        log.info("%4d %5d %9.2e %10.4f %9.4f %7.4f %8.1f %7.1f", fold, epoch, result.lr,
                 train_loss, val_loss, val_acc, result.images_per_s, result.seconds)
        history.append(result)
        if config.keep == "best" and val_loss < best["loss"]:
            best.update(loss=val_loss, state=_cpu_state(scored), epoch=epoch)
        if resume_path is not None:
            _save_resume(resume_path, resume_key, epoch, model, optimizer, schedule, ema,
                         history, best)
        on_epoch(result)

    final = ema.module if ema is not None else model
    if config.keep == "best" and best["state"] is not None:
        return FitResult(history, best["state"], best["epoch"])
    return FitResult(history, _cpu_state(final), config.epochs)


def _save_resume(path: Path, key: str, epoch: int, model: nn.Module,
                 optimizer: torch.optim.Optimizer, schedule: Schedule, ema: ModelEmaV3 | None,
                 history: list[EpochResult], best: dict) -> None:
    payload = {"key": key, "epoch": epoch, "model": _cpu_state(model),
               "optimizer": optimizer.state_dict(), "schedule": dict(schedule.state),
               "ema": _cpu_state(ema.module) if ema is not None else None,
               "history": [asdict(r) for r in history], "best": best,
               "torch_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _resume(path: Path | None, key: str, model: nn.Module, optimizer: torch.optim.Optimizer,
            schedule: Schedule, ema: ModelEmaV3 | None, history: list[EpochResult],
            best: dict) -> int:
    """Load the state of an interrupted run with the same key; the epoch to start from."""
    if path is None or not path.is_file():
        return 1
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["key"] != key:
        log.info("%s is from other params or data: starting afresh", path)
        return 1
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.state.update(state["schedule"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
    history.extend(EpochResult(**r) for r in state["history"])
    best.update(state["best"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resuming from %s after epoch %d", path, state["epoch"])
    return state["epoch"] + 1


def as_metrics(result: EpochResult) -> dict[str, float]:
    values = asdict(result)
    values.pop("epoch")
    return values
