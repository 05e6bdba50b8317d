"""One run's predictions, loaded: the `predictions/` folder of this or another experiment.

In: the folder (fold<k>/oof.npz, test.npz and, when every fold has one, holdout.npz, as the
predict stage writes them), the folds to read and the merge method of its folds; for the check,
the current test ids and the test images on disk. Out: a RunPredictions (the folds' OOF rows
together, their test and holdout predictions merged); UserError naming the run and the command
that redoes it when its test predictions were made for other test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lib.common.errors import UserError
from lib.infer.combine import combine, concat_oof
from lib.infer.predictions import Predictions, check_test_ids, load_predictions


class RunPredictions:
    """One run's predictions folder (`predictions/` of this or another experiment): the
    folds' OOF rows together, their test (and holdout) predictions merged. `name` says which
    run it is in messages and metrics (default: the folder), since a run read from the DVC
    cache is loaded from a temporary folder."""

    def __init__(
        self,
        folder: Path,
        *,
        folds: Sequence[int] | None = None,
        how: str = "mean",
        name: str | None = None,
    ):
        self.folder = Path(folder)
        self.name = name or str(self.folder)
        if folds is None:
            found = sorted(self.folder.glob("fold*/oof.npz"))
            folds = sorted(int(p.parent.name[4:]) for p in found if p.parent.name[4:].isdigit())
            if not folds:
                raise UserError(
                    f"{self.folder}: no fold<k>/oof.npz inside; expected a copy of "
                    "a finished run's predictions/ folder"
                )
        self.folds = list(folds)
        self.fold_oof = {k: self._load(k, "oof") for k in self.folds}
        self.oof = concat_oof(list(self.fold_oof.values()))
        names = [f"{self.name}/fold{k}" for k in self.folds]
        self.test = combine([self._load(k, "test") for k in self.folds], how=how, names=names)
        self.holdout = (
            combine([self._load(k, "holdout") for k in self.folds], how=how, names=names)
            if all(self._path(k, "holdout").is_file() for k in self.folds)
            else None
        )

    def _path(self, fold: int, split: str) -> Path:
        return self.folder / f"fold{fold}" / f"{split}.npz"

    def _load(self, fold: int, split: str) -> Predictions:
        return load_predictions(self._path(fold, split))


def check_runs_current(
    runs: Sequence[RunPredictions], *, test_ids: Sequence, on_disk: Sequence | None
) -> None:
    """Every run's test predictions were made for the current test images
    (lib.infer.predictions)."""
    for i, member in enumerate(runs):
        rerun = (
            "dvc repro predict"
            if i == 0
            else f"dvc exp run for {member.name} again, or take it out of ensemble_runs"
        )
        check_test_ids(
            member.test, expected=test_ids, on_disk=on_disk, source=member.name, rerun=rerun
        )
