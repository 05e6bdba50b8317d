"""Datasets and augmentation: image files in, normalised tensors out.

In: image paths with class indices, the image size and the dataset mean/std (from the stats
stage). Out: albumentations pipelines (random-resized-crop + flip for training, a plain resize
for evaluation) and DataLoaders yielding (float tensor NCHW, class index or -1).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, get_worker_info

from lib.images import load_rgb_array
from lib.pools import worker_count

AUG_LEVELS = ("none", "light", "medium", "heavy")


def augmentations(img_size: int, level: str) -> list[A.BasicTransform]:
    """The random part of the training pipeline, by level; each level adds to the one before.
    none: a plain resize. light: random resized crop + horizontal flip. medium: + shift, scale
    and rotate, and colour jitter. heavy: stronger crops and jitter + coarse dropout (cutout)."""
    if level == "none":
        return [A.Resize(height=img_size, width=img_size)]
    size = (img_size, img_size)
    if level == "light":
        return [A.RandomResizedCrop(size=size, scale=(0.6, 1.0)), A.HorizontalFlip(p=0.5)]
    if level == "medium":
        return [A.RandomResizedCrop(size=size, scale=(0.5, 1.0)), A.HorizontalFlip(p=0.5),
                A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-15, 15),
                         p=0.5),
                A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5)]
    return [A.RandomResizedCrop(size=size, scale=(0.35, 1.0)), A.HorizontalFlip(p=0.5),
            A.Affine(translate_percent=(-0.1, 0.1), scale=(0.8, 1.2), rotate=(-25, 25), p=0.7),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.7),
            A.CoarseDropout(num_holes_range=(1, 6), hole_height_range=(0.08, 0.2),
                            hole_width_range=(0.08, 0.2), p=0.5)]


def build_transforms(*, img_size: int, mean: Sequence[float], std: Sequence[float],
                     train: bool, aug: str = "light", normalize: bool = True) -> A.Compose:
    """Training: the `aug` level's random transforms. Evaluation: resize only. Then normalise
    with the dataset's mean/std (skip with normalize=False, to look at the images)."""
    steps = augmentations(img_size, aug if train else "none")
    if normalize:
        steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    return A.Compose([*steps, ToTensorV2()])


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
                seed: int = 0, pin_memory: bool = False,
                sample_weights: Sequence[float] | None = None) -> DataLoader:
    """A DataLoader whose randomness all flows from one seeded generator. `sample_weights`
    draws each epoch's images with replacement in proportion to them (class balancing).
    Workers are not persistent: restarted each epoch, they take the epoch's seed."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    if isinstance(dataset, ImageDataset):
        dataset.reseed(seed)
    sampler = None
    if sample_weights is not None:
        sampler = WeightedRandomSampler(list(sample_weights), num_samples=len(dataset),
                                        replacement=True, generator=generator)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                      drop_last=False, num_workers=workers, worker_init_fn=_seed_worker,
                      generator=generator, pin_memory=pin_memory)


BALANCE_MODES = ("none", "sampler", "loss_weights")


def inverse_frequency(targets: Sequence[int], num_classes: int) -> np.ndarray:
    """Per-class weights n / (C x count): 1 everywhere for a balanced set. Classes with no
    images get weight 0."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(targets) / (present.sum() * counts[present])
    return weights


def default_workers() -> int:
    """Loader processes: every core but one for the training process itself."""
    return max(worker_count() - 1, 0)


def rows_dataset(rows: pd.DataFrame, *, images_dir: Path, classes: Sequence[int] | None,
                 transform: A.Compose) -> ImageDataset:
    """A dataset of folds.csv rows; targets are column indices into `classes` (None: no
    targets, as for prediction)."""
    paths = [images_dir / path for path in rows["path"]]
    if classes is None:
        return ImageDataset(paths, None, transform)
    column = {label: i for i, label in enumerate(classes)}
    return ImageDataset(paths, [column[label] for label in rows["label"]], transform)
