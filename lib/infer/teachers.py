"""What taught the folds' models (pseudo_from, distill_from), as the ensemble reports it.

In: each fold's checkpoint (models/fold<k>/model.pt), whose provenance lib.train.teaching
filled. Out: the entries "pseudo_labels" (the run, its commit, the threshold and weight, the
test images used per class) and "distillation" (the run, its commit, alpha) of
metrics/ensemble_detail.json; nothing when no run taught them.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def recorded_teaching(model_files: dict[int, Path]) -> dict:
    """metrics/ensemble_detail.json's record of what taught the folds' models, read from their
    checkpoints' provenance: "pseudo_labels" (the run, its commit, the threshold and weight, the
    images used per class) and "distillation" (the run, its commit, alpha), each once with the
    folds that share it (the normal case), else per fold; {} when nothing taught them."""
    found: dict[str, dict[int, dict]] = {"pseudo_labels": {}, "distillation": {}}
    for fold, path in sorted(model_files.items()):
        if not Path(path).is_file():
            continue
        try:
            params = torch.load(path, weights_only=True, map_location="cpu", mmap=True)["params"]
        except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError) as err:
            # predict read the same file: only a file replaced since then gets here
            log.warning(
                "%s: not a readable checkpoint (%s); its teachers are not recorded", path, err
            )
            continue
        for name, key in (("pseudo_labels", "pseudo"), ("distillation", "distill")):
            if key in params:
                found[name][fold] = params[key]
    return {name: _per_fold(folds) for name, folds in found.items() if folds}


def _per_fold(per_fold: dict[int, dict]) -> dict:
    """One entry with the folds that share it, else one entry per fold."""
    distinct = {repr(sorted(v.items())) for v in per_fold.values()}
    if len(distinct) == 1:
        return next(iter(per_fold.values())) | {"folds": sorted(per_fold)}
    return {f"fold{k}": v for k, v in sorted(per_fold.items())}
