"""Checkpoints that carry their provenance.

Out: a torch file holding the weights with everything inference needs to rebuild the model and
its inputs (arch, class labels, mean/std, image size) and the params that trained it.
In (loading): that file, read with `torch.load(weights_only=True)` so it runs no pickled code;
a file that is not such a checkpoint (truncated, empty, foreign, weights of another arch) is a
UserError naming it and how to get it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib.common.errors import UserError
from lib.common.fileio import atomic_path
from lib.train.model import create_model, is_weights, load_torch_file

FIELDS = ("state_dict", "arch", "classes", "mean", "std", "img_size", "params")


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    arch: str,
    classes: list[int],
    mean: list[float],
    std: list[float],
    img_size: int,
    params: dict[str, Any],
    head: str = "default",
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """`state_dict` (e.g. the EMA's or the best epoch's weights) replaces the model's own."""
    source = state_dict if state_dict is not None else model.state_dict()
    state = {k: v.detach().cpu() for k, v in source.items()}
    payload = {
        "state_dict": state,
        "arch": arch,
        "head": head,
        "classes": list(classes),
        "mean": list(mean),
        "std": list(std),
        "img_size": img_size,
        "params": params,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def remedy(path: Path) -> str:
    """What to do about a bad checkpoint at `path`: it is a DVC out, so the cache has it."""
    return f"`dvc checkout {path}` restores it, or `dvc repro` trains it again"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint saved at `path`, checked to hold every field `save_checkpoint` writes."""
    checkpoint = load_torch_file(path, remedy=remedy(path))
    missing = (
        [name for name in FIELDS if name not in checkpoint]
        if isinstance(checkpoint, dict)
        else list(FIELDS)
    )
    if missing or not is_weights(checkpoint["state_dict"]):
        raise UserError(
            f"{path}: not a checkpoint of this pipeline (it lacks "
            f"{', '.join(missing) or 'weights'}); {remedy(path)}"
        )
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: Path | None = None) -> nn.Module:
    """The model a checkpoint (read from `path`) describes, with its weights; weights that do
    not fit its arch (a hand-edited or mixed-up file) are a UserError naming `path`."""
    model = create_model(
        checkpoint["arch"],
        num_classes=len(checkpoint["classes"]),
        pretrained="none",
        head=checkpoint.get("head", "default"),
        img_size=checkpoint.get("img_size"),
    )
    own, state = model.state_dict(), checkpoint["state_dict"]
    misfits = sorted(set(own) ^ set(state)) + sorted(
        k for k in set(own) & set(state) if own[k].shape != state[k].shape
    )
    if misfits:
        raise UserError(
            f"{path or 'checkpoint'}: its weights do not fit {checkpoint['arch']} "
            f"with {len(checkpoint['classes'])} classes ({len(misfits)} misfits, "
            f"e.g. {misfits[0]}); {remedy(path) if path else 'train it again'}"
        )
    model.load_state_dict(state)
    return model
