"""lib.infer.runs: a run's predictions folder read, and checked against the current test
images."""

import numpy as np
import pytest

from lib.common.errors import UserError
from lib.infer.predictions import Predictions, save_predictions
from lib.infer.runs import RunPredictions, check_runs_current
from tests.infer.test_blending import write_run

CLASSES = np.array([3, 7])


def test_run_predictions_reads_a_copied_predictions_folder(tmp_path):
    for k, (ids, label) in enumerate([([1, 2], 3), ([3], 7)]):
        n = len(ids)
        save_predictions(
            tmp_path / f"fold{k}" / "oof.npz",
            Predictions(
                np.full((n, 2), 0.5, np.float32),
                np.array(ids),
                CLASSES,
                splits=np.array(["train"] * n),
                targets=np.full(n, label),
                prior=np.array([0.6, 0.4]),
            ),
        )
        save_predictions(
            tmp_path / f"fold{k}" / "test.npz",
            Predictions(
                np.array([[0.2 + 0.4 * k, 0.8 - 0.4 * k]], np.float32), np.array([9]), CLASSES
            ),
        )
    run = RunPredictions(tmp_path, how="geomean")
    assert run.folds == [0, 1] and run.holdout is None
    assert sorted(run.oof.image_ids.tolist()) == ["1", "2", "3"]
    g = np.sqrt([0.2 * 0.6, 0.8 * 0.4])
    np.testing.assert_allclose(run.test.probs[0], g / g.sum(), rtol=1e-6)
    with pytest.raises(UserError, match="no fold<k>/oof.npz"):
        RunPredictions(tmp_path / "empty")
    # a holdout merged only when every fold predicted it
    save_predictions(
        tmp_path / "fold0" / "holdout.npz",
        Predictions(
            np.array([[0.9, 0.1]], np.float32),
            np.array([5]),
            CLASSES,
            splits=np.array(["validation"]),
            targets=np.array([3]),
        ),
    )
    assert RunPredictions(tmp_path).holdout is None
    save_predictions(
        tmp_path / "fold1" / "holdout.npz",
        Predictions(
            np.array([[0.5, 0.5]], np.float32),
            np.array([5]),
            CLASSES,
            splits=np.array(["validation"]),
            targets=np.array([3]),
        ),
    )
    holdout = RunPredictions(tmp_path).holdout
    np.testing.assert_allclose(holdout.probs, [[0.7, 0.3]], rtol=1e-6)
    assert holdout.targets.tolist() == [3]


def test_runs_of_another_test_set_are_refused_naming_how_to_redo_each(tmp_path):
    this = RunPredictions(write_run(tmp_path / "this", right=0.8), name="this")
    member = RunPredictions(write_run(tmp_path / "b", right=0.8, test_ids=(1, 2, 5)), name="exp-b")
    check_runs_current([this], test_ids=["1", "2", "3", "4"], on_disk=["1", "2", "3"])
    with pytest.raises(
        UserError,
        match=r"^this: .*1 test images on disk without a prediction "
        r"\(4\); run `dvc repro predict`$",
    ):
        check_runs_current([this], test_ids=["1", "2", "3", "4"], on_disk=["1", "2", "3", "4"])
    with pytest.raises(
        UserError,
        match=r"^exp-b: .*1 ids not in test\.json \(5\), .*; run "
        r"`dvc exp run for exp-b again, or take it out of "
        r"ensemble_runs`$",
    ):
        check_runs_current([this, member], test_ids=["1", "2", "3", "4"], on_disk=None)
