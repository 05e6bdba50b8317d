"""Optimizer parameter groups for fine-tuning: discriminative learning rates, no weight decay
on norm and bias parameters.

In: a model (a timm model, or lib.train.heads.ConcatPoolClassifier), the base lr, weight decay and
either a backbone lr multiplier or a layer-wise decay. Out: an SGD (Nesterov) or AdamW
optimizer whose groups carry `lr_scale`: the schedule sets each group's lr to
base lr x lr_scale x schedule factor.
- backbone_lr_mult: the head trains at `lr`, every backbone parameter at `lr x mult`.
- layer_decay (0 < d < 1, overrides the multiplier): the head at `lr`, the block below it at
  `lr x d`, the next at `lr x d^2`... (timm's layer grouping: stem, then each block).
"""

from __future__ import annotations

import torch
from timm.optim._param_groups import param_groups_layer_decay
from torch import nn

from lib.train.heads import head_parameters

OPTIMIZERS = ("sgd", "adamw")


def parameter_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    backbone_lr_mult: float = 1.0,
    layer_decay: float = 0.0,
) -> list[dict]:
    head = {id(p) for p in head_parameters(model)}
    groups = []
    if layer_decay:
        backbone = getattr(model, "backbone", model)
        # timm counts its own classifier as the top layer; a separate head (lib.train.heads) is not
        # in the backbone's count, so the backbone's top block moves one step down below it.
        below_head = layer_decay if backbone is not model else 1.0
        for group in param_groups_layer_decay(
            backbone, weight_decay=weight_decay, layer_decay=layer_decay
        ):
            params = [p for p in group["params"] if id(p) not in head]
            if params:
                groups.append(
                    {
                        "params": params,
                        "weight_decay": group["weight_decay"],
                        "lr_scale": group["lr_scale"] * below_head,
                    }
                )
    else:
        backbone = [p for p in model.parameters() if id(p) not in head]
        groups += _decay_split(backbone, weight_decay, backbone_lr_mult)
    groups += _decay_split(head_parameters(model), weight_decay, 1.0)
    return [g for g in groups if g["params"]]


def _decay_split(params: list[nn.Parameter], weight_decay: float, lr_scale: float) -> list[dict]:
    # No weight decay on biases and norm layers (1-d tensors): decaying them only hurts
    # (https://arxiv.org/abs/1706.02677, section 5.1).
    return [
        {
            "params": [p for p in params if p.ndim > 1],
            "weight_decay": weight_decay,
            "lr_scale": lr_scale,
        },
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": lr_scale},
    ]


def make_optimizer(
    groups: list[dict], *, name: str, lr: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group["lr_scale"] * factor
