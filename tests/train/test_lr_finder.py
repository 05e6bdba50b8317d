import math

import pytest
import timm
import torch

from lib.train.lr_finder import lr_sweep, suggest_lr
from tests.train.test_loop import loaders


def test_sweep_is_exponential_and_stops_when_the_loss_diverges(image_tree):
    train, _ = loaders(image_tree, img_size=16)
    torch.manual_seed(0)
    lrs, losses = lr_sweep(timm.create_model("resnet10t", num_classes=3), train,
                           device=torch.device("cpu"), start_lr=1e-4, end_lr=1e4, steps=40,
                           optimizer="sgd", weight_decay=0.0)
    ratios = [b / a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert ratios == pytest.approx([10 ** (8 / 39)] * len(ratios))
    assert len(lrs) < 40  # lr 1e4 diverges long before the end
    assert all(math.isfinite(x) for x in losses[:-1])


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    losses = [2.3, 2.25, 1.6, 1.3, 1.2, 9.0]  # steepest fall between 1e-4 and 1e-3
    assert suggest_lr(lrs, losses) == 1e-3
