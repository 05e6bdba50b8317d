"""A finished run that teaches this one: `pseudo_from` or `distill_from` resolved to its
predictions.

In: the param's key and value (a folder holding a copy of a run's `predictions/`, a DVC
experiment name or a git revision, resolved as `ensemble_runs` entries are: lib.infer.members),
the DVC project root and where a run keeps its predictions. Out: a SourceRun: the run's
RunPredictions (its folds' OOF rows together, their test predictions averaged), the commit it
was read at (None for a folder) and a digest of what was read, which enters the training
provenance and resume key: the model records exactly which predictions taught it.

DVC sees only the param's text: an experiment name is resolved when the train stage runs, and
that result stays pinned until the stage runs again (`dvc exp run -f`); a commit never moves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.common.errors import UserError
from lib.infer.members import read_member, resolve
from lib.infer.predictions import Predictions
from lib.infer.runs import RunPredictions

NONE_VALUES = (None, "", "none")  # the params' "no source run"
_MEMBERS_KEY = "ensemble_runs: "  # how lib.infer.members opens its messages


@dataclass(frozen=True)
class SourceRun:
    key: str  # the param that named it
    entry: str  # as the param spells it
    commit: str | None  # the commit it was read at; None for a folder
    run: RunPredictions

    def describe(self) -> str:
        where = f" (commit {self.commit[:7]})" if self.commit else ""
        return f"{self.key} = {self.entry}{where}"

    def provenance(self, digest: str) -> dict[str, str | None]:
        return {"from": self.entry, "commit": self.commit, "sha256": digest}


def is_set(value: str | None) -> bool:
    return value not in NONE_VALUES


def read_source_run(
    key: str, entry: str, *, root: Path | str = ".", predictions_dir: str = "predictions"
) -> SourceRun:
    """The run `entry` names, read from its folder or from the local DVC cache at its commit;
    UserError opening with `key` when it is none, or its predictions are not there."""
    try:
        source = resolve(entry, root=Path(root))
        run = read_member(source, root=Path(root), how="mean", predictions_dir=predictions_dir)
    except UserError as err:
        text = str(err).removeprefix(_MEMBERS_KEY)
        raise UserError(f"{key}: {text}") from None
    return SourceRun(key=key, entry=entry, commit=source.commit, run=run)


def digest(*predictions: Predictions) -> str:
    """sha256 of the rows' ids, classes and probabilities: equal exactly when the same
    predictions are read, wherever they came from."""
    h = hashlib.sha256()
    for p in predictions:
        for array in (p.image_ids.astype(str), p.classes.astype(np.int64), p.probs):
            h.update(np.ascontiguousarray(array).tobytes())
        if p.splits is not None:
            h.update(np.ascontiguousarray(p.splits.astype(str)).tobytes())
    return h.hexdigest()


def check_classes(source: SourceRun, predictions: Predictions, classes: list[int]) -> None:
    """UserError naming the run when it predicted other classes than this run trains."""
    theirs = [int(c) for c in predictions.classes]
    if theirs != list(classes):
        extra = sorted(set(theirs) - set(classes))
        missing = sorted(set(classes) - set(theirs))
        raise UserError(
            f"{source.describe()}: predicted other classes than data/folds.csv holds "
            f"({len(theirs)} vs {len(classes)}; theirs only: {extra[:5]}, ours only: "
            f"{missing[:5]}): name a run of this competition"
        )
