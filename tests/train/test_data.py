import numpy as np
import pytest
import torch

from lib.common.images import list_images
from lib.train.data import ImageDataset, build_transforms, make_loader


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
    transform = build_transforms(img_size=20, mean=[0.5] * 3, std=[0.5] * 3, train=True, aug=level)
    assert ImageDataset([path], [0], transform)[0][0].shape == (3, 20, 20)


def test_class_weights_and_balanced_sampler(image_tree):
    from lib.train.data import inverse_frequency

    weights = inverse_frequency([0, 0, 0, 1], num_classes=3)
    assert weights.tolist() == [4 / 6, 4 / 2, 0.0]
    paths = list_images(image_tree / "train")[:8]
    targets = [0] * 6 + [1] * 2  # 6:2 imbalance
    transform = build_transforms(img_size=8, mean=[0.5] * 3, std=[0.5] * 3, train=False)
    per_sample = inverse_frequency(targets, 2)[targets]
    loader = make_loader(
        ImageDataset(paths * 50, targets * 50, transform),
        batch_size=400,
        shuffle=True,
        workers=0,
        seed=0,
        sample_weights=np.tile(per_sample, 50),
    )
    drawn = next(iter(loader))[1]
    assert abs(drawn.float().mean().item() - 0.5) < 0.1  # classes now drawn about equally


def test_epoch_sampler_shards_add_up_to_the_single_process_batches():
    from lib.train.data import EpochSampler

    single = list(EpochSampler(10, seed=4))
    assert sorted(i for i, _ in single) == list(range(10))
    shards = [list(EpochSampler(10, seed=4, rank=r, world=2)) for r in (0, 1)]
    assert all(len(s) == 5 for s in shards)
    for b in range(0, 5, 2):  # per-rank batch 2 = global batch 4
        together = sorted(shards[0][b : b + 2] + shards[1][b : b + 2])
        assert together == sorted(single[2 * b : 2 * b + 4])
    padded = [list(EpochSampler(5, seed=4, rank=r, world=2)) for r in (0, 1)]
    assert len(padded[0]) == len(padded[1]) == 3  # padded by repeating the start
    sampler = EpochSampler(10, seed=4)
    sampler.set_epoch(1)
    assert list(sampler) != single and list(EpochSampler(10, seed=4)) == single
    weighted = list(EpochSampler(1000, seed=0, weights=[1.0] + [0.0] * 999))
    assert {i for i, _ in weighted} == {0} and len({s for _, s in weighted}) > 900


def test_augmentation_does_not_depend_on_worker_processes(image_tree):
    paths = list_images(image_tree / "train")
    transform = build_transforms(
        img_size=16, mean=[0.5] * 3, std=[0.5] * 3, train=True, aug="heavy"
    )
    dataset = ImageDataset(paths, list(range(len(paths))), transform)

    def two_epochs(workers):
        loader = make_loader(dataset, batch_size=4, shuffle=True, workers=workers, seed=2)
        epochs = []
        for epoch in (1, 2):
            loader.sampler.set_epoch(epoch)  # persistent workers see it through the indices
            epochs.append(torch.cat([images for images, _ in loader]))
        return epochs

    in_process, in_workers = two_epochs(0), two_epochs(2)
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_workers, strict=True))
    assert not torch.equal(*in_process)


def test_large_jpegs_are_decoded_at_a_reduced_size(tmp_path):
    from lib.common.images import load_rgb
    from lib.train.data import decode_size
    from tests.conftest import write_image

    jpeg = write_image(tmp_path / "big.jpg", size=(400, 300))
    png = write_image(tmp_path / "big.png", size=(400, 300))
    assert load_rgb(jpeg, min_size=64).size == (100, 75)  # 1/4: both sides still >= 64
    assert load_rgb(jpeg, min_size=160).size == (400, 300)  # 300 // 160 < 2: full size
    assert load_rgb(jpeg).size == load_rgb(png, min_size=64).size == (400, 300)
    assert decode_size(64, train=False) == 64
    assert decode_size(64, train=True, aug="heavy") == 109  # 64 / sqrt(0.35)
