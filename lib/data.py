"""Datasets and augmentation: image files in, normalised tensors out.

In: image paths with class indices, the image size and the dataset mean/std (from the stats
stage). Out: albumentations pipelines (random-resized-crop + flip for training, a plain resize
for evaluation) and DataLoaders yielding (float tensor NCHW, class index or -1).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, get_worker_info

from lib.images import load_rgb_array


def build_transforms(*, img_size: int, mean: Sequence[float], std: Sequence[float],
                     train: bool) -> A.Compose:
    """Training: random resized crop and horizontal flip. Evaluation: resize only."""
    normalize = A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)
    if train:
        steps = [A.RandomResizedCrop(size=(img_size, img_size), scale=(0.6, 1.0)),
                 A.HorizontalFlip(p=0.5)]
    else:
        steps = [A.Resize(height=img_size, width=img_size)]
    return A.Compose([*steps, normalize, ToTensorV2()])


class ImageDataset(Dataset):
    """Image files with optional class indices (-1 where unknown, as for test images)."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int] | None,
                 transform: A.Compose):
        self.paths = list(paths)
        self.targets = list(targets) if targets is not None else [-1] * len(self.paths)
        if len(self.targets) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.targets)} targets")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def reseed(self, seed: int) -> None:
        """Albumentations keeps its own RNG: seed it so augmentation is reproducible."""
        self.transform.set_random_seed(seed)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=load_rgb_array(self.paths[index]))["image"]
        return image, self.targets[index]


def _seed_worker(worker_id: int) -> None:
    # Each worker derives its seeds from torch's per-worker seed (drawn from the loader's seeded
    # generator every epoch), so augmentation is reproducible for a given loader seed
    # (https://pytorch.org/docs/stable/notes/randomness.html).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    dataset = get_worker_info().dataset
    if isinstance(dataset, ImageDataset):
        dataset.reseed(seed)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, workers: int,
                seed: int = 0, pin_memory: bool = False) -> DataLoader:
    generator = torch.Generator()
    generator.manual_seed(seed)
    if isinstance(dataset, ImageDataset):
        dataset.reseed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=False,
                      num_workers=workers, worker_init_fn=_seed_worker, generator=generator,
                      pin_memory=pin_memory, persistent_workers=workers > 0)


def default_workers() -> int:
    """Loader processes: every core but one for the training process itself."""
    return max((os.cpu_count() or 1) - 1, 0)


def rows_dataset(rows: pd.DataFrame, *, images_dir: Path, classes: Sequence[int] | None,
                 transform: A.Compose) -> ImageDataset:
    """A dataset of folds.csv rows; targets are column indices into `classes` (None: no
    targets, as for prediction)."""
    paths = [images_dir / path for path in rows["path"]]
    if classes is None:
        return ImageDataset(paths, None, transform)
    column = {label: i for i, label in enumerate(classes)}
    return ImageDataset(paths, [column[label] for label in rows["label"]], transform)
