"""Datasets and augmentation: image files in, normalised tensors out.

In: image paths with class indices, the image size and the dataset mean/std (from the stats
stage). Out: albumentations pipelines (random-resized-crop + flip for training, a plain resize
for evaluation) and DataLoaders yielding (float tensor NCHW, class index or -1).

Speed: JPEGs larger than needed are decoded at a reduced size (PIL `draft`: libjpeg scales by
1/2, 1/4 or 1/8 inside the inverse DCT, several times faster than a full decode then a resize);
loaders pin memory on CUDA, keep their worker processes between epochs and prefetch batches.
Reproducibility: the training sampler draws each epoch's order from (seed, epoch) alone and
hands every image its own augmentation seed, so augmentation does not depend on how many worker
processes or DDP processes load the images, nor on whether they were restarted.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from lib.common.images import load_rgb_array
from lib.common.pools import worker_count

AUG_LEVELS = ("none", "light", "medium", "heavy")
# The smallest share of the image's area a training crop keeps, per level (RandomResizedCrop).
CROP_MIN_SCALE = {"none": 1.0, "light": 0.6, "medium": 0.5, "heavy": 0.35}
MAX_AUTO_WORKERS = 32


def augmentations(img_size: int, level: str) -> list[A.BasicTransform]:
    """The random part of the training pipeline, by level; each level adds to the one before.
    none: a plain resize. light: random resized crop + horizontal flip. medium: + shift, scale
    and rotate, and colour jitter. heavy: stronger crops and jitter + coarse dropout (cutout)."""
    if level == "none":
        return [A.Resize(height=img_size, width=img_size)]
    size = (img_size, img_size)
    crop = A.RandomResizedCrop(size=size, scale=(CROP_MIN_SCALE[level], 1.0))
    if level == "light":
        return [crop, A.HorizontalFlip(p=0.5)]
    if level == "medium":
        return [
            crop,
            A.HorizontalFlip(p=0.5),
            A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-15, 15), p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    return [
        crop,
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.1, 0.1), scale=(0.8, 1.2), rotate=(-25, 25), p=0.7),
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.7),
        A.CoarseDropout(
            num_holes_range=(1, 6),
            hole_height_range=(0.08, 0.2),
            hole_width_range=(0.08, 0.2),
            p=0.5,
        ),
    ]


def build_transforms(
    *,
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    aug: str = "light",
    normalize: bool = True,
) -> A.Compose:
    """Training: the `aug` level's random transforms. Evaluation: resize only. Then normalise
    with the dataset's mean/std (skip with normalize=False, to look at the images)."""
    steps = augmentations(img_size, aug if train else "none")
    if normalize:
        steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    return A.Compose([*steps, ToTensorV2()])


def decode_size(img_size: int, *, train: bool, aug: str = "light") -> int:
    """The smallest side a JPEG needs to be decoded at: `img_size` for evaluation (a plain
    resize); for training, enough that the smallest random crop still holds about `img_size`
    pixels a side (img_size / sqrt(the level's smallest crop share))."""
    if not train:
        return img_size
    return math.ceil(img_size / math.sqrt(CROP_MIN_SCALE[aug]))


class ImageDataset(Dataset):
    """Image files with optional class indices (-1 where unknown, as for test images).

    `decode_size`: JPEGs whose both sides are at least twice this are decoded at a reduced
    size that keeps both sides >= it (see lib.common.images.load_rgb); None = always at full size.
    An index may come with its own augmentation seed, as (index, seed) (see EpochSampler)."""

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[int] | None,
        transform: A.Compose,
        decode_size: int | None = None,
    ):
        self.paths = list(paths)
        self.targets = list(targets) if targets is not None else [-1] * len(self.paths)
        if len(self.targets) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.targets)} targets")
        self.transform = transform
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.paths)

    def reseed(self, seed: int) -> None:
        """Albumentations keeps its own RNG: seed it so augmentation is reproducible. One
        generator shared by every step (Compose.set_random_seed would give each step its own
        generator with the same seed: the flip's coin would then equal the crop's first draw)."""
        self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        if seed is not None:
            self.reseed(seed)
        pixels = load_rgb_array(self.paths[index], min_size=self.decode_size)
        return self.transform(image=pixels)["image"], self.targets[index]


class EpochSampler(Sampler):
    """Training order as a function of (seed, epoch) alone: a permutation, or with `weights`
    draws with replacement in proportion to them (class balancing). Each position also gets an
    augmentation seed; yields (index, seed). Under DDP, rank r of `world` takes every world-th
    position, the order padded (by repeating its start) so every rank has as many batches:
    with a global batch of world x the per-rank batch, the ranks' batches together are exactly
    the single-process batches of the same seed. Call set_epoch() before each epoch."""

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        weights: Sequence[float] | None = None,
        rank: int = 0,
        world: int = 1,
        with_seeds: bool = True,
    ):
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.with_seeds = with_seeds  # False: plain indices, for datasets that take only those
        self.weights = (
            torch.as_tensor(weights, dtype=torch.float64) if weights is not None else None
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world)

    def __iter__(self) -> Iterator[tuple[int, int] | int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 10_007 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.multinomial(
                self.weights, self.size, replacement=True, generator=generator
            )
        seeds = torch.randint(0, 2**31 - 1, (self.size,), generator=generator)
        padded = len(self) * self.world
        if padded > self.size:
            repeat = torch.arange(padded - self.size) % self.size
            order, seeds = torch.cat([order, order[repeat]]), torch.cat([seeds, seeds[repeat]])
        order, seeds = (
            order[self.rank :: self.world].tolist(),
            seeds[self.rank :: self.world].tolist(),
        )
        yield from zip(order, seeds, strict=True) if self.with_seeds else order


def _seed_worker(worker_id: int) -> None:
    # Each worker derives its seeds from torch's per-worker seed (drawn from the loader's seeded
    # generator when the workers start), so anything random outside the per-image augmentation
    # seeds is reproducible too (https://pytorch.org/docs/stable/notes/randomness.html).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    dataset = get_worker_info().dataset
    if isinstance(dataset, ImageDataset):
        dataset.reseed(seed)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int | str,
    seed: int = 0,
    pin_memory: bool | None = None,
    sample_weights: Sequence[float] | None = None,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader whose randomness all flows from `seed` (and the epoch: see EpochSampler).
    `shuffle`: an EpochSampler (with `sample_weights`: class-balanced draws with replacement);
    else the images in order. `rank`/`world`: this DDP process's share (in order: every
    world-th image, unpadded, so sums over the ranks count each image once). `workers`: a
    number of processes or "auto" (resolve_workers); they persist between epochs and prefetch.
    `pin_memory` (default: on CUDA) lets batches be copied to the GPU asynchronously.
    Shuffled (training) loaders drop a last batch of a single image: batch norm cannot train on
    one value per channel, and which image is left out changes every epoch."""
    workers = resolve_workers(workers)
    generator = torch.Generator()
    generator.manual_seed(seed)
    if isinstance(dataset, ImageDataset):
        dataset.reseed(seed)
    if shuffle:
        sampler = EpochSampler(
            len(dataset),
            seed=seed,
            weights=sample_weights,
            rank=rank,
            world=world,
            with_seeds=isinstance(dataset, ImageDataset),
        )
    else:
        sampler = range(rank, len(dataset), world)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    drop_last = shuffle and len(sampler) > 1 and len(sampler) % batch_size == 1
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        worker_init_fn=_seed_worker,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def inverse_frequency(targets: Sequence[int], num_classes: int) -> np.ndarray:
    """Per-class weights n / (C x count): 1 everywhere for a balanced set. Classes with no
    images get weight 0."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(targets) / (present.sum() * counts[present])
    return weights


def resolve_workers(workers: int | str) -> int:
    """`workers` as a number. "auto": on CUDA, every core but one for each of the local
    training processes (torchrun's LOCAL_WORLD_SIZE shares the cores out), at most
    MAX_AUTO_WORKERS; on the CPU 0, since the model's own threads already use every core and
    worker processes would only compete with them."""
    if workers != "auto":
        return int(workers)
    if not torch.cuda.is_available():
        return 0
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(max(worker_count() // local - 1, 1), MAX_AUTO_WORKERS)


def rows_dataset(
    rows: pd.DataFrame,
    *,
    images_dir: Path,
    classes: Sequence[int] | None,
    transform: A.Compose,
    decode_size: int | None = None,
) -> ImageDataset:
    """A dataset of folds.csv rows; targets are column indices into `classes` (None: no
    targets, as for prediction)."""
    paths = [images_dir / path for path in rows["path"]]
    if classes is None:
        return ImageDataset(paths, None, transform, decode_size)
    column = {label: i for i, label in enumerate(classes)}
    return ImageDataset(paths, [column[label] for label in rows["label"]], transform, decode_size)
