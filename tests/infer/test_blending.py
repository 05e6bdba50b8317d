"""lib.infer.blending: runs blended, scored and laid out as the submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.infer.blending import blend_and_score
from lib.infer.predictions import Predictions, save_predictions
from lib.infer.runs import RunPredictions
from lib.infer.scoring import read_answers
from lib.infer.submission import make_layout

CLASSES, PRIOR = np.array([1, 2]), np.array([0.5, 0.5])
LABELS = {i: 1 + i % 2 for i in range(1, 7)}  # 1 = cat, 2 = dog
SETTINGS = {
    "how": "mean",
    "target_prior": "uniform",
    "prior_correction": False,
    "low": 1e-3,
    "high": 1 - 1e-3,
}


def write_run(folder: Path, *, right: float, test_ids: tuple[int, ...] = (3, 1, 2)) -> Path:
    """Two folds' predictions of the 6 labelled images (each fold's first image confidently
    wrong, the others `right` on the true class) and of test images `test_ids` (3 of them)."""
    for fold, ids in ((0, [1, 2, 3]), (1, [4, 5, 6])):
        probs = np.array(
            [[right, 1 - right] if LABELS[i] == 1 else [1 - right, right] for i in ids], np.float32
        )
        probs[0] = [0.1, 0.9] if LABELS[ids[0]] == 1 else [0.9, 0.1]
        save_predictions(
            folder / f"fold{fold}" / "oof.npz",
            Predictions(
                probs,
                np.array(ids),
                CLASSES,
                splits=np.array(["train"] * 3),
                targets=np.array([LABELS[i] for i in ids]),
                prior=PRIOR,
            ),
        )
        save_predictions(
            folder / f"fold{fold}" / "test.npz",
            Predictions(
                np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32),
                np.array(test_ids),
                CLASSES,
                prior=PRIOR,
            ),
        )
    return folder


LAYOUT = make_layout("proba", test_ids=[1, 2, 3, 4], labels=[1, 2], names={1: "cat", 2: "dog"})


def test_one_run_blends_to_its_own_scores_and_a_full_submission(tmp_path):
    run = RunPredictions(write_run(tmp_path / "a", right=0.8))
    outcome = blend_and_score([run], layout=LAYOUT, answers=None, weights=None, **SETTINGS)
    assert list(outcome.frame.columns) == ["id", "cat", "dog"]
    assert outcome.frame["id"].tolist() == ["1", "2", "3", "4"]
    assert outcome.frame.iloc[3, 1:].tolist() == [0.5, 0.5]  # image 4 never predicted: the prior
    assert outcome.detail["submission"] == {"rows": 4, "filled_missing_images": 1}
    assert outcome.detail["oof"]["accuracy"] == pytest.approx(4 / 6)
    assert outcome.headline["oof"]["accuracy"] == pytest.approx(4 / 6)
    assert "test" not in outcome.detail and "weights" not in outcome.detail


def test_weights_choose_between_runs_and_auto_fits_them(tmp_path):
    sure = RunPredictions(write_run(tmp_path / "sure", right=0.95))
    unsure = RunPredictions(write_run(tmp_path / "unsure", right=0.6))
    alone = blend_and_score([sure], layout=LAYOUT, answers=None, weights=None, **SETTINGS)
    first = blend_and_score([sure, unsure], layout=LAYOUT, answers=None, weights=[1, 0], **SETTINGS)
    even = blend_and_score([sure, unsure], layout=LAYOUT, answers=None, weights=None, **SETTINGS)
    assert first.detail["oof"]["log_loss"] == pytest.approx(alone.detail["oof"]["log_loss"])
    assert even.detail["oof"]["log_loss"] != pytest.approx(alone.detail["oof"]["log_loss"])
    fitted = blend_and_score(
        [sure, unsure], layout=LAYOUT, answers=None, weights="auto", **SETTINGS
    )
    assert "weights" in fitted.detail


def test_known_test_answers_are_scored(tmp_path):
    run = RunPredictions(write_run(tmp_path / "a", right=0.8))
    answers = tmp_path / "test_labels.csv"
    answers.write_text("id,label\n1,2\n2,2\n3,1\n4,1\n")  # 3 of 4 right (4 falls back)
    outcome = blend_and_score(
        [run], layout=LAYOUT, answers=read_answers(answers), weights=None, **SETTINGS
    )
    assert outcome.detail["test"]["accuracy"] == pytest.approx(0.75)
    assert outcome.headline["test"]["accuracy"] == pytest.approx(0.75)
