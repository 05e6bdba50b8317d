import numpy as np
import pytest
import torch

from lib.data import ImageDataset, build_transforms, make_loader
from lib.images import list_images


def test_eval_transform_resizes_and_normalises_with_given_stats(image_tree):
    path = list_images(image_tree / "train")[0]
    transform = build_transforms(img_size=24, mean=[0.5] * 3, std=[0.25] * 3, train=False)
    image = ImageDataset([path], [0], transform)[0][0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    # (x/255 - 0.5)/0.25 lies in [-2, 2]
    assert image.min() >= -2.0 and image.max() <= 2.0


def test_train_loader_yields_batches_with_targets_and_is_reproducible(image_tree):
    paths = list_images(image_tree / "train")
    transform = build_transforms(img_size=16, mean=[0.5] * 3, std=[0.5] * 3, train=True)
    dataset = ImageDataset(paths, list(range(len(paths))), transform)

    def first_batch():
        torch.manual_seed(0)
        np.random.seed(0)
        return next(iter(make_loader(dataset, batch_size=4, shuffle=True, workers=0, seed=3)))

    (a_images, a_targets), (b_images, b_targets) = first_batch(), first_batch()
    assert a_images.shape == (4, 3, 16, 16)
    assert torch.equal(a_targets, b_targets)
    assert torch.equal(a_images, b_images)


def test_unlabelled_dataset_and_length_mismatch(image_tree):
    paths = list_images(image_tree / "test")
    transform = build_transforms(img_size=8, mean=[0.5] * 3, std=[0.5] * 3, train=False)
    assert ImageDataset(paths, None, transform)[0][1] == -1
    with pytest.raises(ValueError, match="4 paths but 1 targets"):
        ImageDataset(paths, [0], transform)


def test_augmentation_is_reproducible_with_loader_workers(image_tree):
    paths = list_images(image_tree / "train")
    transform = build_transforms(img_size=16, mean=[0.5] * 3, std=[0.5] * 3, train=True)
    dataset = ImageDataset(paths, list(range(len(paths))), transform)

    def epoch(seed):
        loader = make_loader(dataset, batch_size=6, shuffle=True, workers=2, seed=seed)
        return torch.cat([images for images, _ in loader])

    assert torch.equal(epoch(5), epoch(5))
    assert not torch.equal(epoch(5), epoch(6))
