"""Classifier heads for a timm backbone.

In: a timm model and the head kind. Out: the model with that head and `num_classes` outputs.
- default: timm's own (global average pooling -> dropout -> linear).
- concat: average and max pooling concatenated -> batch norm -> dropout -> linear, the fastai
  head (https://docs.fast.ai/vision.learner.html#create_head): max pooling keeps the strongest
  local evidence that averaging dilutes.
"""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("default", "concat")


class ConcatPoolHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(2 * in_features)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return self.fc(self.dropout(self.norm(pooled)))


class ConcatPoolClassifier(nn.Module):
    """A timm backbone (features only) with a ConcatPoolHead; keeps timm's small API."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float):
        super().__init__()
        backbone.reset_classifier(0, global_pool="")
        self.backbone = backbone
        self.head = ConcatPoolHead(backbone.num_features, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the classifier head (what trains while the backbone is frozen)."""
    if isinstance(model, ConcatPoolClassifier):
        return list(model.head.parameters())
    return list(model.get_classifier().parameters())
