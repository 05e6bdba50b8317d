"""Fine-tune a classifier on one fold.

In: a model, training and validation DataLoaders and a TrainConfig. Out: the trained model and
one EpochResult per epoch (also sent to a metrics callback, e.g. DVCLive). The learning rate
warms up linearly, then follows a cosine down to zero, stepped every batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.device import autocast, prepare_model, to_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    optimizer: str = "adamw"       # "sgd" | "adamw"
    momentum: float = 0.9          # SGD only
    weight_decay: float = 0.01
    warmup_epochs: float = 0.5     # linear warm-up, in epochs (may be fractional)


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    lr: float
    train_loss: float
    val_loss: float
    val_acc: float
    images_per_s: float
    seconds: float


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm layers: decaying them only hurts
    # (https://arxiv.org/abs/1706.02677, section 5.1).
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier for step s: linear from ~0 to 1 over warm-up, then cosine to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device,
                    desc: str) -> tuple[float, int]:
    """Mean training loss over the epoch and the number of images seen."""
    model.train()
    loss_sum, seen = 0.0, 0
    for images, targets in tqdm(loader, desc=desc, leave=False, unit="batch"):
        images, targets = to_device(images, device), targets.to(device)
        with autocast(device):
            loss = nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
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


def fit(model: nn.Module, *, train_loader: DataLoader, val_loader: DataLoader,
        config: TrainConfig, device: torch.device, fold: int,
        on_epoch: Callable[[EpochResult], None] = lambda result: None) -> list[EpochResult]:
    model = prepare_model(model, device)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = len(train_loader)
    schedule = warmup_cosine(config.epochs * steps_per_epoch,
                             round(config.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    history = []
    log.info("%4s %5s %9s %10s %9s %7s %8s %7s", "fold", "epoch", "lr", "train_loss",
             "val_loss", "val_acc", "img/s", "sec")
    for epoch in range(1, config.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        train_loss, seen = train_one_epoch(model, train_loader, optimizer, scheduler, device,
                                           desc=f"fold {fold} epoch {epoch}")
        train_seconds = time.perf_counter() - start
        val_loss, val_acc = evaluate(model, val_loader, device)
        result = EpochResult(epoch, lr, train_loss, val_loss, val_acc, seen / train_seconds,
                             time.perf_counter() - start)
        log.info("%4d %5d %9.2e %10.4f %9.4f %7.4f %8.1f %7.1f", fold, epoch, lr, train_loss,
                 val_loss, val_acc, result.images_per_s, result.seconds)
        history.append(result)
        on_epoch(result)
    return history


def as_metrics(result: EpochResult) -> dict[str, float]:
    values = asdict(result)
    values.pop("epoch")
    return values
