"""lib.infer.combine: predictions of the same images merged (mean, geometric mean, weighted),
rows aligned by split and image id."""

import numpy as np
import pytest

from lib.common.errors import UserError
from lib.infer.combine import combine, concat_oof, merge_probs
from lib.infer.predictions import Predictions

CLASSES = np.array([3, 7])


def mean_of_folds(folds: list[Predictions]) -> Predictions:
    return combine(folds, how="mean", names=[f"fold {i}" for i in range(len(folds))])


def test_mean_of_folds_aligns_rows_by_image_id():
    a = Predictions(np.array([[0.9, 0.1], [0.2, 0.8]], np.float32), np.array([10, 20]), CLASSES)
    b = Predictions(np.array([[0.4, 0.6], [0.7, 0.3]], np.float32), np.array([20, 10]), CLASSES)
    mean = mean_of_folds([a, b])
    assert mean.image_ids.tolist() == ["10", "20"]  # ids are text
    np.testing.assert_allclose(mean.probs, [[0.8, 0.2], [0.3, 0.7]], rtol=1e-6)


def test_mean_of_folds_refuses_mismatched_folds():
    a = Predictions(np.ones((1, 2), np.float32) / 2, np.array([1]), CLASSES)
    with pytest.raises(UserError, match="different class list"):
        mean_of_folds([a, Predictions(a.probs, a.image_ids, np.array([3, 8]))])
    with pytest.raises(UserError, match="other images"):
        mean_of_folds([a, Predictions(a.probs, np.array([2]), CLASSES)])


def test_concat_oof_keeps_every_fold_row():
    parts = [
        Predictions(
            np.full((n, 2), 0.5, np.float32),
            np.arange(n),
            CLASSES,
            splits=np.array(["train"] * n),
            targets=np.full(n, 3),
        )
        for n in (2, 3)
    ]
    oof = concat_oof(parts)
    assert oof.probs.shape == (5, 2) and oof.targets.tolist() == [3] * 5


def test_mean_of_folds_carries_targets_in_the_aligned_order():
    a = Predictions(
        np.array([[0.9, 0.1], [0.2, 0.8]], np.float32),
        np.array([20, 10]),
        CLASSES,
        targets=np.array([3, 7]),
    )
    b = Predictions(a.probs[::-1].copy(), np.array([10, 20]), CLASSES, targets=np.array([7, 3]))
    mean = mean_of_folds([a, b])
    assert mean.image_ids.tolist() == ["10", "20"] and mean.targets.tolist() == [7, 3]
    np.testing.assert_allclose(mean.probs, [[0.2, 0.8], [0.9, 0.1]], rtol=1e-6)


def test_arithmetic_and_geometric_merges_by_hand():
    a = np.array([[0.9, 0.1], [0.5, 0.5]])
    b = np.array([[0.1, 0.9], [0.8, 0.2]])
    np.testing.assert_allclose(merge_probs([a, b], how="mean"), [[0.5, 0.5], [0.65, 0.35]])
    # weights 3:1 -> 0.75 a + 0.25 b
    np.testing.assert_allclose(
        merge_probs([a, b], how="mean", weights=[3, 1]), [[0.7, 0.3], [0.575, 0.425]]
    )
    # geometric: sqrt(0.5 * 0.8) = 0.6325, sqrt(0.5 * 0.2) = 0.3162 -> / 0.9487
    geo = merge_probs([a, b], how="geomean")
    np.testing.assert_allclose(geo[0], [0.5, 0.5])
    np.testing.assert_allclose(
        geo[1], [0.4**0.5 / (0.4**0.5 + 0.1**0.5), 0.1**0.5 / (0.4**0.5 + 0.1**0.5)]
    )
    np.testing.assert_allclose(geo[1], [2 / 3, 1 / 3])  # sqrt(.4) = 2 sqrt(.1)
    # weighted geometric: a^0.75 b^0.25, renormalised
    w = merge_probs([a, b], how="geomean", weights=[3, 1])[0]
    raw = np.array([0.9**0.75 * 0.1**0.25, 0.1**0.75 * 0.9**0.25])
    np.testing.assert_allclose(w, raw / raw.sum())
    # a zero probability does not make the geometric mean NaN
    assert np.isfinite(merge_probs([np.array([[1.0, 0.0]]), b[:1]], how="geomean")).all()
    with pytest.raises(ValueError, match="weights"):
        merge_probs([a, b], how="mean", weights=[1])
    with pytest.raises(ValueError, match="weights"):
        combine(
            [Predictions(a, np.arange(len(a)), CLASSES, prior=np.array([0.5, 0.5]))] * 2,
            weights=[1, -1],
        )


def test_combine_aligns_oof_rows_by_split_and_id_and_weights_priors():
    # id 1 exists in train and validation: both split and id make the key
    kwargs = {"classes": CLASSES}
    a = Predictions(
        np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
        np.array([1, 1]),
        splits=np.array(["validation", "train"]),
        targets=np.array([7, 3]),
        prior=np.array([0.8, 0.2]),
        **kwargs,
    )
    b = Predictions(
        np.array([[0.5, 0.5], [0.0, 1.0]], np.float32),
        np.array([1, 1]),
        splits=np.array(["train", "validation"]),
        targets=np.array([3, 7]),
        prior=np.array([0.4, 0.6]),
        **kwargs,
    )
    merged = combine([a, b], how="mean", weights=[1, 3])
    assert merged.splits.tolist() == ["train", "validation"]
    assert merged.targets.tolist() == [3, 7]
    # train row: 0.25 (0, 1) + 0.75 (0.5, 0.5); validation row: 0.25 (1, 0) + 0.75 (0, 1)
    np.testing.assert_allclose(merged.probs, [[0.375, 0.625], [0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(merged.prior, [0.5, 0.5])
