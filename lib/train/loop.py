"""Fine-tune a classifier on one fold, resumably.

In: a model, training and validation DataLoaders, a TrainConfig and (optionally) the path of a
resume file. Out: FitResult: one EpochResult per epoch (also sent to a callback, e.g. DVCLive)
and the weights to keep (last epoch or best validation loss; the EMA's when enabled).

Each epoch's randomness (shuffling, augmentation, mixup, dropout) is seeded from (seed, epoch),
and the full state (model, optimizer, schedule, EMA, best weights, history, torch RNG) is saved
after every epoch; a run killed after epoch e and started again resumes at e + 1 and ends with
the same weights as a run that was never interrupted. A resume file that cannot be read is set
aside (renamed, with a warning) and training starts over (the file: lib.train.resume).

Speed (lib.train.device): AMP (bf16, or fp16 with a grad scaler, whose state is saved too),
channels_last, cuDNN benchmark mode, optional torch.compile; the loss is summed on the device and
read once per epoch, so the CPU never waits for the GPU inside an epoch.
Several processes (torchrun, lib.train.distributed): the model is wrapped in DDP (optionally with
synchronised batch norm), each process trains on its share of every batch (see
lib.train.data.EpochSampler) and validates its share of the images; losses and counts are summed
over the processes, and only rank 0 logs and writes the resume file.
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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.common.params import Config, boolean, choice, integer, number, param, source_run, text
from lib.train.data import AUG_LEVELS
from lib.train.device import (
    AMP_MODES,
    amp_dtype,
    autocast,
    compile_model,
    configure_backends,
    grad_scaler,
    prepare_model,
    to_device,
)
from lib.train.distributed import Dist, all_sum
from lib.train.heads import HEADS, head_parameters
from lib.train.mix import mix_batch, soft_cross_entropy
from lib.train.optim import OPTIMIZERS, make_optimizer, parameter_groups, set_lr
from lib.train.resume import read_resume, write_resume
from lib.train.schedules import SCHEDULES, Schedule

log = logging.getLogger(__name__)
ONE_PROCESS = Dist()  # the default: no DDP


@dataclass(frozen=True)
class TrainConfig(Config):
    """train@k's config: the model, its data and the training loop's knobs. Their defaults and
    meaning live in params.yaml only (build one with `load` or `from_params`); a field without
    a rule shares RULES' (other readers have it too). channels_last is not a param: it follows
    the device."""

    arch: str = param(text)
    pretrained: str = param(text)
    head: str = param(choice(*HEADS))
    dropout: float = param(number(0, high=0.95))
    img_size: int = param(integer(16))
    epochs: int = param(integer(1))
    batch_size: int = param()
    aug: str = param(choice(*AUG_LEVELS))
    optimizer: str = param(choice(*OPTIMIZERS))
    lr: float = param(number(0, strict=True))
    momentum: float = param(number(0, high=0.999))
    weight_decay: float = param(number(0))
    freeze_epochs: int = param(integer(0))
    backbone_lr_mult: float = param(number(0, strict=True, high=1.0))
    layer_decay: float = param(number(0, high=0.999))
    schedule: str = param(choice(*SCHEDULES))
    warmup_epochs: float = param(number(0))
    sgdr_t0: float = param(number(0, strict=True))
    sgdr_t_mult: float = param(number(1))
    plateau_patience: int = param(integer(1))
    plateau_factor: float = param(number(0, strict=True, high=1.0))
    label_smoothing: float = param(number(0, high=0.5))
    mixup: float = param(number(0, high=1.0))
    cutmix: float = param(number(0, high=1.0))
    mix_alpha: float = param(number(0, strict=True))
    ema: float = param(number(0, high=0.99999))
    class_balance: str = param(choice("none", "sampler", "loss_weights"))
    keep: str = param(choice("last", "best"))
    seed: int = param()
    amp: str = param(choice(*AMP_MODES))
    gpus: int = param(integer(1))
    sync_bn: bool = param(boolean)
    # Finished runs that teach this one (lib.train.teaching), read when the stage runs; the
    # model records which commits and predictions they were.
    pseudo_from: str | None = param(source_run)
    pseudo_threshold: float = param(number(0, high=1.0))
    pseudo_weight: float = param(number(0, strict=True, high=10.0))
    pseudo_soft: bool = param(boolean)
    distill_from: str | None = param(source_run)
    distill_alpha: float = param(number(0, high=1.0))
    # Speed only (loader processes; torch.compile computes the same function): not DVC deps.
    workers: int | str = param(speed=True)
    compile: bool = param(boolean, speed=True)
    channels_last: bool | None = None  # NHWC memory format; None = lib.train.device decides


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    lr: float
    train_loss: float
    val_loss: float
    val_acc: float
    images_per_s: float
    seconds: float
    # On the augmented (and mixed) batches as trained, against each row's dominant target; nan
    # in the history of a resume file written before it was recorded.
    train_acc: float = math.nan


@dataclass
class FitResult:
    history: list[EpochResult]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    kept_epoch: int = 0


def seed_epoch(seed: int, epoch: int, loader: DataLoader, rank: int = 0) -> None:
    """Seed everything random in this epoch from (seed, epoch) alone; DDP processes other than
    rank 0 draw other dropout masks and mixing weights (the sampler keeps the data order and
    augmentation common to all)."""
    epoch_seed = seed * 10_007 + epoch + rank * 7_919
    torch.manual_seed(epoch_seed)
    np.random.seed(epoch_seed % 2**32)
    random.seed(epoch_seed)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed)
    if hasattr(loader.dataset, "reseed"):
        loader.dataset.reseed(epoch_seed % 2**32)


def set_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) everything but the classifier head."""
    head = {id(p) for p in head_parameters(model)}
    for weights in model.parameters():
        weights.requires_grad_(not frozen or id(weights) in head)


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    dtype: torch.dtype | None,
    config: TrainConfig,
    num_classes: int,
    device: torch.device,
    class_weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch; the loss and the number of rows whose top class is their
    dominant target, both still on the device (reading them would make the CPU wait for the
    GPU)."""
    images = to_device(images, device, channels_last=config.channels_last)
    targets = targets.to(device, non_blocking=True)
    images, soft = mix_batch(
        images,
        targets,
        num_classes=num_classes,
        mixup_prob=config.mixup,
        cutmix_prob=config.cutmix,
        alpha=config.mix_alpha,
        smoothing=config.label_smoothing,
    )
    with autocast(device, dtype):
        logits = model(images)
    loss = soft_cross_entropy(logits.float(), soft, class_weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # scale/step/update pass through unless fp16
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), (logits.detach().argmax(1) == soft.argmax(1)).sum()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    *,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    first_step: int,
    config: TrainConfig,
    num_classes: int,
    device: torch.device,
    ema: ModelEmaV3 | None,
    class_weights: torch.Tensor | None,
    desc: str,
    scaler: torch.amp.GradScaler | None = None,
    dtype: torch.dtype | None = None,
    ema_of: nn.Module | None = None,
    env: Dist = ONE_PROCESS,
) -> tuple[float, float, int]:
    """Mean training loss and accuracy over the epoch and the number of images seen (over every
    process).
    `ema_of`: the module the EMA follows when `model` is a DDP or compiled wrapper of it."""
    model.train()
    scaler = scaler if scaler is not None else grad_scaler(device, dtype)
    loss_sum, seen = torch.zeros((), dtype=torch.float64, device=device), 0
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for step, (images, targets) in enumerate(
        tqdm(loader, desc=desc, leave=False, unit="batch", disable=not env.main), start=first_step
    ):
        set_lr(optimizer, config.lr, schedule.factor(step))
        loss, hits = train_step(
            model,
            images,
            targets,
            optimizer=optimizer,
            scaler=scaler,
            dtype=dtype,
            config=config,
            num_classes=num_classes,
            device=device,
            class_weights=class_weights,
        )
        if ema is not None:
            ema.update(ema_of if ema_of is not None else model)
        loss_sum += loss * len(targets)
        correct += hits
        seen += len(targets)
    total, correct, seen = all_sum([loss_sum.item(), correct.item(), seen], device, env)
    return total / max(seen, 1), correct / max(seen, 1), int(seen)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    dtype: torch.dtype | None | str = "auto",
    env: Dist = ONE_PROCESS,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on a labelled loader (this process's share of it under
    DDP; the sums are added over the processes)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for images, targets in loader:
        images, targets = to_device(images, device), targets.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum")
        correct += (logits.argmax(1) == targets).sum()
        seen += len(targets)
    loss, correct, seen = all_sum([loss_sum.item(), correct.item(), seen], device, env)
    return loss / max(seen, 1), correct / max(seen, 1)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def fit(
    model: nn.Module,
    *,
    train_loader: DataLoader,
    val_loader: DataLoader,
    config: TrainConfig,
    device: torch.device,
    fold: int,
    num_classes: int,
    class_weights: torch.Tensor | None = None,
    resume_path: Path | None = None,
    resume_key: str = "",
    on_epoch: Callable[[EpochResult], None] = lambda result: None,
    env: Dist = ONE_PROCESS,
) -> FitResult:
    """Train for config.epochs (from after the last epoch in `resume_path`, if it has the same
    key). Under DDP (`env`), the loaders must hold this process's share (lib.train.data.make_loader
    with rank and world) and only rank 0 writes the resume file."""
    configure_backends(device)
    dtype = amp_dtype(device, config.amp)
    model = prepare_model(model, device, channels_last=config.channels_last)
    if env.enabled and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(
        parameter_groups(
            model,
            weight_decay=config.weight_decay,
            backbone_lr_mult=config.backbone_lr_mult,
            layer_decay=config.layer_decay,
        ),
        name=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
    )
    steps = len(train_loader)
    schedule = Schedule(
        config.schedule,
        total_steps=config.epochs * steps,
        steps_per_epoch=steps,
        warmup_steps=round(config.warmup_epochs * steps),
        t0_epochs=config.sgdr_t0,
        t_mult=config.sgdr_t_mult,
        plateau_patience=config.plateau_patience,
        plateau_factor=config.plateau_factor,
    )
    ema = ModelEmaV3(model, decay=config.ema) if config.ema else None
    weights = class_weights.to(device) if class_weights is not None else None
    history: list[EpochResult] = []
    best = {"loss": math.inf, "state": None, "epoch": 0}
    scaler = grad_scaler(device, dtype)
    start = _resume(
        resume_path,
        resume_key,
        model,
        optimizer,
        schedule,
        ema,
        history,
        best,
        scaler,
        set_aside=env.main,
    )
    for result in history:
        on_epoch(result)  # replay what an interrupted run logged (its metrics files are gone)
    trained = model
    if env.enabled:
        # Frozen epochs leave the backbone without gradients: DDP must then look for them.
        trained = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.freeze_epochs > 0,
        )
    trained = compile_model(trained, config.compile)

    log.info(
        "%4s %5s %9s %10s %9s %9s %7s %8s %7s",
        "fold",
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "img/s",
        "sec",
    )
    for epoch in range(start, config.epochs + 1):
        seed_epoch(config.seed, epoch, train_loader, env.rank)
        set_frozen(model, epoch <= config.freeze_epochs)
        began = time.perf_counter()
        train_loss, train_acc, seen = train_one_epoch(
            trained,
            train_loader,
            optimizer=optimizer,
            schedule=schedule,
            first_step=(epoch - 1) * steps,
            config=config,
            num_classes=num_classes,
            device=device,
            ema=ema,
            class_weights=weights,
            desc=f"fold {fold} epoch {epoch}",
            scaler=scaler,
            dtype=dtype,
            ema_of=model,
            env=env,
        )
        train_seconds = time.perf_counter() - began
        scored = ema.module if ema is not None else model
        val_loss, val_acc = evaluate(scored, val_loader, device, dtype, env)
        schedule.end_epoch(val_loss)
        result = EpochResult(
            epoch,
            optimizer.param_groups[-1]["lr"],
            train_loss,
            val_loss,
            val_acc,
            seen / train_seconds,
            time.perf_counter() - began,
            train_acc,
        )
        log.info(
            "%4d %5d %9.2e %10.4f %9.4f %9.4f %7.4f %8.1f %7.1f",
            fold,
            epoch,
            result.lr,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            result.images_per_s,
            result.seconds,
        )
        history.append(result)
        if config.keep == "best" and val_loss < best["loss"]:
            best.update(loss=val_loss, state=_cpu_state(scored), epoch=epoch)
        if resume_path is not None and env.main:
            _save_resume(
                resume_path,
                resume_key,
                epoch,
                model,
                optimizer,
                schedule,
                ema,
                history,
                best,
                scaler,
            )
        on_epoch(result)

    final = ema.module if ema is not None else model
    if config.keep == "best" and best["state"] is not None:
        return FitResult(history, best["state"], best["epoch"])
    return FitResult(history, _cpu_state(final), config.epochs)


def _save_resume(
    path: Path,
    key: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    ema: ModelEmaV3 | None,
    history: list[EpochResult],
    best: dict,
    scaler: torch.amp.GradScaler,
) -> None:
    payload = {
        "key": key,
        "epoch": epoch,
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "schedule": dict(schedule.state),
        "ema": _cpu_state(ema.module) if ema is not None else None,
        "history": [asdict(r) for r in history],
        "best": best,
        "torch_rng": torch.get_rng_state(),
        "scaler": scaler.state_dict(),
    }
    write_resume(path, payload)


def _resume(
    path: Path | None,
    key: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    ema: ModelEmaV3 | None,
    history: list[EpochResult],
    best: dict,
    scaler: torch.amp.GradScaler,
    set_aside: bool = True,
) -> int:
    """Load the state of an interrupted run with the same key; the epoch to start from.
    `set_aside`: rename an unreadable resume file (one process of several does it)."""
    if path is None or not path.is_file():
        return 1
    state = read_resume(path, key, set_aside)
    if state is None:
        return 1
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.state.update(state["schedule"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
    history.extend(EpochResult(**r) for r in state["history"])
    best.update(state["best"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    log.info("resuming from %s after epoch %d", path, state["epoch"])
    return state["epoch"] + 1


def as_metrics(result: EpochResult) -> dict[str, float]:
    values = asdict(result)
    values.pop("epoch")
    return values
