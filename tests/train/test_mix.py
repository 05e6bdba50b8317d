import torch

from lib.train.mix import mix_batch, smooth_one_hot, soft_cross_entropy


def test_label_smoothing_spreads_the_given_share():
    soft = smooth_one_hot(torch.tensor([1]), num_classes=4, smoothing=0.2)
    assert torch.allclose(soft, torch.tensor([[0.05, 0.85, 0.05, 0.05]]))


def test_mixed_targets_sum_to_one_for_mixup_and_cutmix():
    images = torch.rand(8, 3, 16, 16)
    targets = torch.arange(8) % 3
    for mixup, cutmix in ((1.0, 0.0), (0.0, 1.0)):
        torch.manual_seed(0)
        mixed, soft = mix_batch(
            images,
            targets,
            num_classes=3,
            mixup_prob=mixup,
            cutmix_prob=cutmix,
            alpha=1.0,
            smoothing=0.1,
        )
        assert torch.allclose(soft.sum(1), torch.ones(8))
        assert not torch.equal(mixed, images) and mixed.shape == images.shape


def test_cutmix_pastes_a_box_and_weights_labels_by_its_area():
    images = torch.stack([torch.zeros(1, 10, 10), torch.ones(1, 10, 10)])
    torch.manual_seed(1)
    mixed, soft = mix_batch(
        images,
        torch.tensor([0, 1]),
        num_classes=2,
        mixup_prob=0.0,
        cutmix_prob=1.0,
        alpha=1.0,
        smoothing=0.0,
    )
    pasted_share = mixed[0].mean().item()  # image 0 is zeros: its ones came from image 1
    if pasted_share:  # the permutation may pair an image with itself
        assert abs(soft[0, 1].item() - pasted_share) < 1e-6


def test_no_mixing_gives_the_plain_one_hot_and_cross_entropy():
    images, targets = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    same, soft = mix_batch(
        images, targets, num_classes=3, mixup_prob=0.0, cutmix_prob=0.0, alpha=1.0, smoothing=0.0
    )
    assert torch.equal(same, images)
    logits = torch.randn(4, 3)
    assert torch.allclose(
        soft_cross_entropy(logits, soft), torch.nn.functional.cross_entropy(logits, targets)
    )
