import math

import pytest
import timm
import torch

from lib.data import ImageDataset, build_transforms, make_loader
from lib.images import list_images
from lib.train import TrainConfig, fit, make_optimizer, warmup_cosine


def test_warmup_then_cosine_to_zero():
    factor = warmup_cosine(total_steps=10, warmup_steps=2)
    assert [factor(0), factor(1)] == [0.5, 1.0]
    assert factor(2) == 1.0
    assert factor(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(10) == pytest.approx(0.0)


def test_no_weight_decay_on_biases_and_norm_layers():
    model = timm.create_model("resnet10t", num_classes=3)
    optimizer = make_optimizer(model, TrainConfig(epochs=1, lr=0.1, weight_decay=0.05))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"])
    assert all(p.ndim <= 1 for p in plain["params"])
    plain_ids = {id(p) for p in plain["params"]}
    assert id(model.bn1.weight) in plain_ids and id(model.fc.bias) in plain_ids


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_epoch_smoke_training_reports_an_epoch(image_tree, optimizer):
    paths = list_images(image_tree / "train")
    targets = [int(p.parent.name) - 1 for p in paths]
    train_tf = build_transforms(img_size=32, mean=[0.5] * 3, std=[0.5] * 3, train=True)
    eval_tf = build_transforms(img_size=32, mean=[0.5] * 3, std=[0.5] * 3, train=False)
    train = make_loader(ImageDataset(paths, targets, train_tf), batch_size=8, shuffle=True,
                        workers=0)
    val = make_loader(ImageDataset(paths, targets, eval_tf), batch_size=8, shuffle=False,
                      workers=0)
    model = timm.create_model("resnet10t", num_classes=3)
    before = model.fc.weight.detach().clone()
    seen = []
    history = fit(model, train_loader=train, val_loader=val, device=torch.device("cpu"), fold=0,
                  config=TrainConfig(epochs=1, lr=0.01, optimizer=optimizer), on_epoch=seen.append)
    assert seen == history and len(history) == 1
    result = history[0]
    assert math.isfinite(result.train_loss) and 0.0 <= result.val_acc <= 1.0
    assert result.images_per_s > 0
    assert not torch.equal(before, model.fc.weight)
