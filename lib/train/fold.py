"""Train one fold: its loaders from the folds table, the model, the resume key, the loop and the
checkpoint with its provenance.

In: the folds table (data/folds.csv), the fold, the images folder, the training image stats,
the run's TrainConfig, the process group (lib.train.distributed) and what finished runs teach
the training set (lib.train.teaching: pseudo-labels, distillation).
Out: the kept weights saved as a checkpoint (lib.train.checkpoint) by rank 0, per-epoch metrics
through a callback; a killed run resumes from the resume file when params, folds and stats are
unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from lib.common.errors import UserError
from lib.prepare.folds import split_fold
from lib.train.checkpoint import save_checkpoint
from lib.train.data import (
    build_transforms,
    decode_size,
    inverse_frequency,
    make_loader,
    rows_dataset,
)
from lib.train.distributed import Dist
from lib.train.loop import EpochResult, TrainConfig, fit
from lib.train.model import create_model

if TYPE_CHECKING:
    from lib.train.teaching import Teaching


@dataclass
class FoldData:
    train: DataLoader
    val: DataLoader
    classes: list[int]
    loss_weights: torch.Tensor | None  # class_balance: loss_weights


def fold_data(
    folds: pd.DataFrame,
    fold: int,
    *,
    images_dir: Path,
    stats: Mapping,
    config: TrainConfig,
    env: Dist,
    teaching: Teaching | None = None,
) -> FoldData:
    """The fold's training and validation loaders (this process's share of each batch).
    `teaching` (pseudo-labels, distilled targets) changes the training set only."""
    if config.batch_size % env.world:
        raise UserError(
            f"batch_size = {config.batch_size} is not allowed with gpus = "
            f"{env.world}: expected a multiple of gpus (each takes an equal share)"
        )
    classes = sorted(int(label) for label in set(folds["label"]))
    loaders, targets = {}, {}
    for name, rows in zip(("train", "val"), split_fold(folds, fold), strict=True):
        is_train = name == "train"
        dataset = rows_dataset(
            rows,
            images_dir=images_dir,
            classes=classes,
            transform=build_transforms(
                img_size=config.img_size,
                mean=stats["mean"],
                std=stats["std"],
                train=is_train,
                aug=config.aug,
            ),
            decode_size=decode_size(config.img_size, train=is_train, aug=config.aug),
        )
        if is_train and teaching:
            dataset = teaching.training_set(dataset, rows, classes=classes)
        targets[name] = dataset.targets
        weights = inverse_frequency(dataset.targets, len(classes))
        balance = is_train and config.class_balance == "sampler"
        loaders[name] = make_loader(
            dataset,
            batch_size=config.batch_size // env.world,
            shuffle=is_train,
            workers=config.workers,
            seed=config.seed,
            rank=env.rank,
            world=env.world,
            sample_weights=weights[dataset.targets] if balance else None,
        )
    loss_weights = None
    if config.class_balance == "loss_weights":
        loss_weights = torch.tensor(
            inverse_frequency(targets["train"], len(classes)), dtype=torch.float32
        )
    return FoldData(loaders["train"], loaders["val"], classes, loss_weights)


def resume_key(provenance: Mapping[str, Any], *, folds_text: str, stats_text: str) -> str:
    """A resume file counts only for the same params, folds and stats."""
    text = json.dumps(dict(provenance), sort_keys=True) + folds_text + stats_text
    return hashlib.sha256(text.encode()).hexdigest()


def train_fold(
    data: FoldData,
    *,
    fold: int,
    config: TrainConfig,
    provenance: Mapping[str, Any],
    stats: Mapping,
    key: str,
    model_path: Path,
    resume_path: Path,
    device: torch.device,
    env: Dist,
    on_epoch: Callable[[EpochResult], None],
) -> None:
    """Fit the fold's model; rank 0 saves it to `model_path` with `provenance` (the params
    that made it) and removes the resume file."""
    model = create_model(
        config.arch,
        num_classes=len(data.classes),
        pretrained=config.pretrained,
        head=config.head,
        dropout=config.dropout,
        img_size=config.img_size,
    )
    result = fit(
        model,
        train_loader=data.train,
        val_loader=data.val,
        config=config,
        device=device,
        fold=fold,
        num_classes=len(data.classes),
        class_weights=data.loss_weights,
        resume_path=resume_path,
        resume_key=key,
        on_epoch=on_epoch,
        env=env,
    )
    if not env.main:
        return
    save_checkpoint(
        model_path,
        model=model,
        arch=config.arch,
        head=config.head,
        classes=data.classes,
        mean=stats["mean"],
        std=stats["std"],
        img_size=config.img_size,
        params=dict(provenance) | {"kept_epoch": result.kept_epoch},
        state_dict=result.state_dict,
    )
    resume_path.unlink(missing_ok=True)
