import numpy as np
import pytest

from lib.ensemble import (
    accuracy,
    clip_probs,
    concat_oof,
    log_loss,
    mean_of_folds,
    score,
    target_columns,
)
from lib.errors import UserError
from lib.predictions import Predictions

CLASSES = np.array([3, 7])


def test_mean_of_folds_aligns_rows_by_image_id():
    a = Predictions(np.array([[0.9, 0.1], [0.2, 0.8]], np.float32), np.array([10, 20]), CLASSES)
    b = Predictions(np.array([[0.4, 0.6], [0.7, 0.3]], np.float32), np.array([20, 10]), CLASSES)
    mean = mean_of_folds([a, b])
    assert mean.image_ids.tolist() == [10, 20]
    np.testing.assert_allclose(mean.probs, [[0.8, 0.2], [0.3, 0.7]], rtol=1e-6)


def test_mean_of_folds_refuses_mismatched_folds():
    a = Predictions(np.ones((1, 2), np.float32) / 2, np.array([1]), CLASSES)
    with pytest.raises(UserError, match="different class lists"):
        mean_of_folds([a, Predictions(a.probs, a.image_ids, np.array([3, 8]))])
    with pytest.raises(UserError, match="different images"):
        mean_of_folds([a, Predictions(a.probs, np.array([2]), CLASSES)])


def test_clipping_then_renormalising_by_hand():
    clipped = clip_probs(np.array([[1.0, 0.0, 0.0]]), low=0.01, high=0.9)
    # [0.9, 0.01, 0.01] / 0.92
    np.testing.assert_allclose(clipped, [[0.9 / 0.92, 0.01 / 0.92, 0.01 / 0.92]])
    assert clipped.sum() == pytest.approx(1.0)


def test_log_loss_and_accuracy_by_hand():
    probs = np.array([[0.5, 0.5], [0.0, 1.0], [0.25, 0.75]])
    columns = np.array([0, 0, 1])
    expected = -(np.log(0.5) + np.log(1e-15) + np.log(0.75)) / 3
    assert log_loss(probs, columns) == pytest.approx(expected)
    assert accuracy(probs, columns) == pytest.approx(2 / 3)  # argmax of a tie is column 0
    scores = score(probs, columns, low=0.01, high=0.99)
    assert scores["log_loss_clipped"] < scores["log_loss"]  # clipping caps the 1e-15 mistake


def test_target_columns_and_unknown_label():
    assert target_columns(CLASSES, np.array([7, 3, 7])).tolist() == [1, 0, 1]
    with pytest.raises(UserError, match=r"labels \[5\]"):
        target_columns(CLASSES, np.array([5]))


def test_concat_oof_keeps_every_fold_row():
    parts = [Predictions(np.full((n, 2), 0.5, np.float32), np.arange(n), CLASSES,
                         splits=np.array(["train"] * n), targets=np.full(n, 3)) for n in (2, 3)]
    oof = concat_oof(parts)
    assert oof.probs.shape == (5, 2) and oof.targets.tolist() == [3] * 5


def test_mean_of_folds_carries_targets_in_the_aligned_order():
    a = Predictions(np.array([[0.9, 0.1], [0.2, 0.8]], np.float32), np.array([20, 10]), CLASSES,
                    targets=np.array([3, 7]))
    b = Predictions(a.probs[::-1].copy(), np.array([10, 20]), CLASSES, targets=np.array([7, 3]))
    mean = mean_of_folds([a, b])
    assert mean.image_ids.tolist() == [10, 20] and mean.targets.tolist() == [7, 3]
    np.testing.assert_allclose(mean.probs, [[0.2, 0.8], [0.9, 0.1]], rtol=1e-6)
