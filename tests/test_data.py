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


@pytest.mark.parametrize("level", ["none", "light", "medium", "heavy"])
def test_every_augmentation_level_gives_the_training_size(image_tree, level):
    path = list_images(image_tree / "train")[0]
    transform = build_transforms(img_size=20, mean=[0.5] * 3, std=[0.5] * 3, train=True,
                                 aug=level)
    assert ImageDataset([path], [0], transform)[0][0].shape == (3, 20, 20)


def test_class_weights_and_balanced_sampler(image_tree):
    from lib.data import inverse_frequency
    weights = inverse_frequency([0, 0, 0, 1], num_classes=3)
    assert weights.tolist() == [4 / 6, 4 / 2, 0.0]
    paths = list_images(image_tree / "train")[:8]
    targets = [0] * 6 + [1] * 2  # 6:2 imbalance
    transform = build_transforms(img_size=8, mean=[0.5] * 3, std=[0.5] * 3, train=False)
    per_sample = inverse_frequency(targets, 2)[targets]
    loader = make_loader(ImageDataset(paths * 50, targets * 50, transform), batch_size=400,
                         shuffle=True, workers=0, seed=0,
                         sample_weights=np.tile(per_sample, 50))
    drawn = next(iter(loader))[1]
    assert abs(drawn.float().mean().item() - 0.5) < 0.1  # classes now drawn about equally
