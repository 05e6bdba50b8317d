"""The resume file of an interrupted training: written whole or not at all, read back only when
it is whole and from the same run.

In: the file's path, the run's key (a hash of the params and data that shape the weights) and
the state to save (lib.train.loop gathers it: model, optimizer, schedule, EMA, history, best
weights, torch RNG, grad scaler). Out: the file, written atomically after every epoch; its
contents when it has every field of RESUME_FIELDS and the same key; else None, and a file that
cannot be read or lacks a field is set aside (renamed ``<name>.corrupt``, with a warning), never
deleted, so whoever wants to look at it still can.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from lib.common.fileio import atomic_path
from lib.train.model import UnreadableFile, load_torch_file

log = logging.getLogger(__name__)
RESUME_FIELDS = (
    "key",
    "epoch",
    "model",
    "optimizer",
    "schedule",
    "ema",
    "history",
    "best",
    "torch_rng",
    "scaler",
)


def write_resume(path: Path, payload: dict) -> None:
    """`payload` saved to `path` atomically: a kill mid-write leaves the previous file."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_resume(path: Path, key: str, set_aside: bool) -> dict | None:
    """The resume file's contents when they are from a run with `key`; None when it is from
    other params or data (it is overwritten after the first epoch), or when it is unreadable
    or lacks a field (a kill while an older version wrote it, a full disk, a copy cut short):
    such a file is then renamed, not deleted, so whoever wants to look at it still can."""
    try:
        state = load_torch_file(path, remedy="training starts over")
    except UnreadableFile as err:
        _set_aside(path, str(err), rename=set_aside)
        return None
    if isinstance(state, dict) and "key" in state and state["key"] != key:
        log.info("%s is from other params or data: starting afresh", path)
        return None
    lacking = (
        [name for name in RESUME_FIELDS if name not in state]
        if isinstance(state, dict)
        else list(RESUME_FIELDS)
    )
    if lacking:
        _set_aside(
            path,
            f"{path}: not a resume file (it lacks {', '.join(lacking)}); training starts over",
            rename=set_aside,
        )
        return None
    return state


def _set_aside(path: Path, why: str, *, rename: bool) -> None:
    """Warn `why`; with `rename`, move `path` to an unused ``<name>.corrupt`` beside it."""
    if not rename:
        log.warning("%s", why)
        return
    kept = _unused_name(path.with_name(f"{path.name}.corrupt"))
    os.replace(path, kept)
    log.warning("%s (the file is kept as %s)", why, kept)


def _unused_name(path: Path) -> Path:
    """`path`, or `path` with .1, .2, ... added: a name no file has yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
