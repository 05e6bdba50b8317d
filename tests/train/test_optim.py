import pytest
import timm

from lib.train.model import create_model
from lib.train.optim import make_optimizer, parameter_groups, set_lr


def ids(params):
    return {id(p) for p in params}


def test_no_weight_decay_on_biases_and_norm_layers():
    model = timm.create_model("resnet10t", num_classes=3)
    groups = parameter_groups(model, weight_decay=0.05)
    for group in groups:
        expected = 0.0 if all(p.ndim <= 1 for p in group["params"]) else 0.05
        assert group["weight_decay"] == expected
    no_decay = set().union(*(ids(g["params"]) for g in groups if g["weight_decay"] == 0))
    assert id(model.bn1.weight) in no_decay and id(model.fc.bias) in no_decay


def test_backbone_multiplier_sets_discriminative_lrs():
    model = create_model("resnet10t", num_classes=3, pretrained="none")
    optimizer = make_optimizer(
        parameter_groups(model, weight_decay=0.0, backbone_lr_mult=0.1), name="sgd", lr=0.5
    )
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.fc.weight)] == 0.5
    assert lr_of[id(model.conv1[0].weight)] == pytest.approx(0.05)
    set_lr(optimizer, 0.5, 0.5)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.conv1[0].weight)] == pytest.approx(0.025)


def test_layer_decay_gives_lower_layers_smaller_lrs():
    model = create_model("resnet10t", num_classes=3, pretrained="none", head="concat")
    groups = parameter_groups(model, weight_decay=0.01, layer_decay=0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    stem = scale_of[id(model.backbone.conv1[0].weight)]
    last_block = scale_of[id(model.backbone.layer4[0].conv1.weight)]
    assert scale_of[id(model.head.fc.weight)] == 1.0
    assert stem < last_block < 1.0
    assert len(scale_of) == len(list(model.parameters()))
