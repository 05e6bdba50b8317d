"""Self-distillation from out-of-fold predictions: training targets that mix the true label with
what a finished run predicted for the image when it was held out.

In: a source run (lib.train.source_run: `distill_from`), this run's folds table
(data/folds.csv), the fold being trained, its training rows, the classes and `alpha`.
Out: one target row per training row, `alpha * one_hot(label) + (1 - alpha) * teacher's OOF
row`, summing to 1 (equal to the one-hot when alpha is 1), and the provenance the model records.

The teacher must have been trained on the same folds: its fold k must hold exactly the images
(and labels) of this run's fold k, and it must have OOF predictions for every fold this fold
trains on; anything else is refused naming the run and what differs. So the target of an
image always comes from a teacher model that never saw the image. What remains: that teacher
model saw the other folds, this fold's validation images among them, so a student's OOF
scores are a little optimistic; judge a distilled run on the test set with answers (or the
holdout), not on OOF alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib.common.errors import UserError
from lib.prepare.folds import HOLDOUT
from lib.train.source_run import SourceRun, check_classes, digest


def check_same_folds(source: SourceRun, folds: pd.DataFrame, *, fold: int) -> None:
    """UserError naming the run when its folds differ from `folds` (data/folds.csv) or it
    lacks OOF predictions for a fold whose images fold `fold` trains on."""
    teacher = source.run.fold_oof
    needed = sorted(set(int(k) for k in folds["fold"]) - {HOLDOUT, fold})
    missing = [k for k in needed if k not in teacher]
    if missing:
        raise UserError(
            f"{source.describe()}: has no out-of-fold predictions for fold(s) {missing} "
            f"(it has {sorted(teacher)}), whose images fold {fold} trains on: train the teacher "
            "on every fold (train_folds) with the same folds"
        )
    for k, oof in sorted(teacher.items()):
        ours = folds[folds["fold"] == k]
        mine = {
            (str(s), str(i)): int(label)
            for s, i, label in zip(ours["split"], ours["image_id"], ours["label"], strict=True)
        }
        theirs = {
            (str(s), str(i)): int(t)
            for s, i, t in zip(oof.splits, oof.image_ids, oof.targets, strict=True)
        }
        if mine.keys() != theirs.keys():
            only = sorted(theirs.keys() - mine.keys()) or sorted(mine.keys() - theirs.keys())
            raise UserError(
                f"{source.describe()}: its fold {k} holds other images than fold {k} of "
                f"data/folds.csv ({len(theirs)} vs {len(mine)}, e.g. {'/'.join(only[0])}): "
                "distillation needs a teacher trained on the same folds (folds, seed, "
                "validation and images)"
            )
        relabelled = [key for key, label in mine.items() if theirs[key] != label]
        if relabelled:
            raise UserError(
                f"{source.describe()}: {len(relabelled)} images of fold {k} have other labels "
                f"there than in data/folds.csv (e.g. {'/'.join(relabelled[0])}): the teacher "
                "was trained on other labels"
            )


def distill_targets(
    source: SourceRun, rows: pd.DataFrame, *, classes: list[int], alpha: float
) -> np.ndarray:
    """`alpha * one_hot + (1 - alpha) * OOF row` for each of `rows` (folds.csv rows the
    teacher has OOF predictions for: check_same_folds first), float32, rows summing to 1."""
    oof = source.run.oof
    check_classes(source, oof, classes)
    where = {
        (str(s), str(i)): n for n, (s, i) in enumerate(zip(oof.splits, oof.image_ids, strict=True))
    }
    index = [where[(str(s), str(i))] for s, i in zip(rows["split"], rows["image_id"], strict=True)]
    teacher = np.asarray(oof.probs, dtype=np.float64)[index]
    teacher /= teacher.sum(axis=1, keepdims=True)
    column = {label: c for c, label in enumerate(classes)}
    one_hot = np.zeros_like(teacher)
    one_hot[np.arange(len(rows)), [column[int(label)] for label in rows["label"]]] = 1.0
    return (alpha * one_hot + (1 - alpha) * teacher).astype(np.float32)


def provenance(source: SourceRun, *, alpha: float) -> dict:
    """What the model records of its teacher: the run, its commit, a digest of its OOF rows."""
    return source.provenance(digest(source.run.oof)) | {"alpha": alpha}
