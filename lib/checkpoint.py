"""Checkpoints that carry their provenance.

Out: a torch file holding the weights with everything inference needs to rebuild the model and
its inputs (arch, class labels, mean/std, image size) and the params that trained it.
In (loading): that file, read with `torch.load(weights_only=True)` so it runs no pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib.fileio import atomic_path
from lib.model import create_model


def save_checkpoint(path: Path, *, model: nn.Module, arch: str, classes: list[int],
                    mean: list[float], std: list[float], img_size: int,
                    params: dict[str, Any], head: str = "default",
                    state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """`state_dict` (e.g. the EMA's or the best epoch's weights) replaces the model's own."""
    source = state_dict if state_dict is not None else model.state_dict()
    state = {k: v.detach().cpu() for k, v in source.items()}
    payload = {"state_dict": state, "arch": arch, "head": head, "classes": list(classes),
               "mean": list(mean), "std": list(std), "img_size": img_size, "params": params}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    model = create_model(checkpoint["arch"], num_classes=len(checkpoint["classes"]),
                         pretrained="none", head=checkpoint.get("head", "default"))
    model.load_state_dict(checkpoint["state_dict"])
    return model
