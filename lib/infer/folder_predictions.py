"""Predict a folder of new images with trained fold models, outside the DVC pipeline.

In: a folder of images, the checkpoints of one or more runs (``<run>/fold<k>/model.pt``), the
TTA settings (as ``predict@k`` applies them), the merge of the models' probabilities (as the
ensemble merges folds), the class names (None: label ids) and how many classes to list (k).
Out: Predictions of every image in the folder (its id is its file stem) merged over every model
with equal weights, in id order (``lib.common.ids.id_order``), and the top-k table: ``id,
predicted, label_1, prob_1, ..., label_k, prob_k``, predicted and labels being class names when
known, else label ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib.common.errors import UserError
from lib.common.ids import repeated_stem
from lib.common.images import decode_problem, list_images
from lib.infer.combine import combine
from lib.infer.inference import PredictConfig, prepare_inference
from lib.infer.predictions import Predictions
from lib.infer.submission import class_names
from lib.train.checkpoint import load_checkpoint, model_from_checkpoint
from lib.train.data import ImageDataset

log = logging.getLogger(__name__)


def fold_models(runs: Sequence[Path]) -> list[Path]:
    """Every ``fold<k>/model.pt`` under the run folders, in run then fold order."""
    found = [
        path
        for run in runs
        for path in sorted(
            Path(run).glob("fold*/model.pt"),
            key=lambda p: int(p.parent.name[4:] or 0) if p.parent.name[4:].isdigit() else -1,
        )
    ]
    if not found:
        raise UserError(
            f"no fold<k>/model.pt under {', '.join(str(r) for r in runs)}: train "
            "the folds first (`dvc repro train`), or name the folders with --runs"
        )
    return found


def folder_images(folder: Path) -> tuple[list[Path], list[str]]:
    """The images under ``folder`` (recursively) and their ids (file stems), sorted. A file
    that does not decode (text named .jpg, empty, truncated, a decompression bomb) is skipped
    with a warning naming it and why; the rest are predicted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; expected a folder of images")
    paths = list_images(folder)
    if not paths:
        raise UserError(f"{folder}: no image files in it (looked for .jpg, .png, .webp, ...)")
    readable = []
    for path in paths:
        problem = decode_problem(path)
        if problem is None:
            readable.append(path)
        else:
            log.warning("%s: skipped, it does not decode as an image: %s", path, problem)
    if not readable:
        raise UserError(
            f"{folder}: none of its {len(paths)} image files decodes (first: {paths[0].name})"
        )
    paths = readable
    repeated = repeated_stem(paths)
    if repeated:
        path, first = repeated
        raise UserError(
            f"{path}: its id {path.stem!r} (the file stem) is taken by {first} too; rename one"
        )
    return paths, [path.stem for path in paths]


def predict_images(
    paths: Sequence[Path],
    ids: Sequence[str],
    model_files: Sequence[Path],
    *,
    device: torch.device,
    config: PredictConfig,
    merge: str,
) -> Predictions:
    """Each model's TTA probabilities (``config``) on the images, merged by ``merge``."""
    parts = []
    for model_file in model_files:
        checkpoint = load_checkpoint(model_file)
        inference = prepare_inference(
            model_from_checkpoint(checkpoint, model_file),
            checkpoint,
            device=device,
            config=config,
        )
        dataset = ImageDataset(
            list(paths), None, inference.transform, decode_size=inference.decoded
        )
        parts.append(
            Predictions(
                probs=inference.probs(dataset, str(model_file)),
                image_ids=np.array(ids, str),
                classes=np.array(checkpoint["classes"]),
            )
        )
    return combine(parts, how=merge, names=[str(path) for path in model_files])


def top_k_table(predictions: Predictions, names: dict[int, str] | None, k: int) -> pd.DataFrame:
    """One row per image: id, predicted class, then the k most probable classes and their
    probabilities, most probable first."""
    k = min(k, predictions.probs.shape[1])
    labels = np.array(class_names(predictions.classes, names), dtype=object)
    order = np.argsort(-predictions.probs, axis=1, kind="stable")[:, :k]
    table = pd.DataFrame({"id": predictions.image_ids, "predicted": labels[order[:, 0]]})
    for rank in range(k):
        table[f"label_{rank + 1}"] = labels[order[:, rank]]
        table[f"prob_{rank + 1}"] = np.take_along_axis(
            predictions.probs, order[:, rank : rank + 1], axis=1
        )[:, 0]
    return table
