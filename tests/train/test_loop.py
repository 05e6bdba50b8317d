import math

import pytest
import timm
import torch

from lib.common.images import list_images
from lib.train.data import ImageDataset, build_transforms, make_loader
from lib.train.loop import fit, set_frozen
from lib.train.model import create_model
from tests.conftest import train_config


def loaders(image_tree, img_size=32):
    paths = list_images(image_tree / "train")
    targets = [int(p.parent.name) - 1 for p in paths]
    train_tf = build_transforms(img_size=img_size, mean=[0.5] * 3, std=[0.5] * 3, train=True)
    eval_tf = build_transforms(img_size=img_size, mean=[0.5] * 3, std=[0.5] * 3, train=False)
    train = make_loader(
        ImageDataset(paths, targets, train_tf), batch_size=8, shuffle=True, workers=0, seed=1
    )
    val = make_loader(ImageDataset(paths, targets, eval_tf), batch_size=8, shuffle=False, workers=0)
    return train, val


def test_freezing_leaves_only_the_head_trainable():
    for head in ("default", "concat"):
        model = create_model("resnet10t", num_classes=3, pretrained="none", head=head)
        set_frozen(model, True)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(n.startswith(("fc.", "head.")) for n in trainable)
        set_frozen(model, False)
        assert all(p.requires_grad for p in model.parameters())


def test_frozen_epochs_change_only_the_head(image_tree):
    train, val = loaders(image_tree)
    model = create_model("resnet10t", num_classes=3, pretrained="none")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(
        model,
        train_loader=train,
        val_loader=val,
        device=torch.device("cpu"),
        fold=0,
        num_classes=3,
        config=train_config(epochs=2, lr=0.01, freeze_epochs=2),
    )
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize(
    ("arch", "config"),
    [
        ("resnet10t", train_config(epochs=1, lr=0.01, optimizer="sgd", schedule="sgdr")),
        (
            "tf_efficientnet_lite0",
            train_config(
                epochs=1,
                lr=0.01,
                mixup=0.5,
                cutmix=0.5,
                ema=0.9,
                label_smoothing=0.1,
                schedule="onecycle",
            ),
        ),
        (
            "resnet10t",
            train_config(epochs=1, lr=0.01, schedule="plateau", layer_decay=0.7, keep="best"),
        ),
    ],
)
def test_one_epoch_smoke_training(image_tree, arch, config):
    train, val = loaders(image_tree)
    model = create_model(arch, num_classes=3, pretrained="none", head="concat", dropout=0.1)
    seen = []
    result = fit(
        model,
        train_loader=train,
        val_loader=val,
        device=torch.device("cpu"),
        fold=0,
        num_classes=3,
        config=config,
        on_epoch=seen.append,
    )
    assert seen == result.history and len(result.history) == 1
    epoch = result.history[0]
    assert math.isfinite(epoch.train_loss) and 0.0 <= epoch.val_acc <= 1.0
    assert epoch.images_per_s > 0 and result.kept_epoch == 1
    assert set(result.state_dict) == set(model.state_dict())


def test_same_seed_same_metrics_and_weights(image_tree):
    def run():
        torch.manual_seed(0)
        model = timm.create_model("resnet10t", num_classes=3)
        train, val = loaders(image_tree)
        return fit(
            model,
            train_loader=train,
            val_loader=val,
            device=torch.device("cpu"),
            fold=0,
            num_classes=3,
            config=train_config(epochs=2, lr=0.01, mixup=0.5, seed=3),
        )

    first, second = run(), run()
    assert first.history[-1].val_loss == second.history[-1].val_loss
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)


@pytest.mark.parametrize(("images", "batch_size"), [(17, 16), (9, 8), (18, 16)])
def test_a_fold_whose_last_batch_would_hold_one_image_trains(image_tree, images, batch_size):
    # 25 images over 3 folds leave 17 to train on: with batch 16 the last batch would be one
    # image, which batch norm cannot train on ("Expected more than 1 value per channel")
    paths = list_images(image_tree / "train")[:images]
    targets = [int(p.parent.name) - 1 for p in paths]
    transform = build_transforms(img_size=16, mean=[0.5] * 3, std=[0.5] * 3, train=True)
    train = make_loader(
        ImageDataset(paths, targets, transform),
        batch_size=batch_size,
        shuffle=True,
        workers=0,
        seed=1,
    )
    assert [len(t) for _, t in train] == (
        [batch_size] if images % batch_size == 1 else [batch_size, images - batch_size]
    )
    model = create_model("resnet10t", num_classes=3, pretrained="none", head="concat")
    result = fit(
        model,
        train_loader=train,
        val_loader=train,
        device=torch.device("cpu"),
        fold=0,
        num_classes=3,
        config=train_config(epochs=1, lr=0.01),
    )
    assert len(result.history) == 1 and math.isfinite(result.history[0].train_loss)
