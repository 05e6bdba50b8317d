import re

import numpy as np
import pytest

from lib.common.errors import ParamError, UserError
from lib.infer.ensemble import (
    RunPredictions,
    accuracy,
    check_clip_bounds,
    clip_probs,
    combine,
    concat_oof,
    correct_prior,
    log_loss,
    merge_probs,
    most_probable_column,
    read_target_prior,
    score,
    target_columns,
    top_k_accuracy,
    top_k_hits,
)
from lib.infer.predictions import Predictions, save_predictions, training_prior

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


def test_prior_correction_by_hand():
    probs = np.array([[0.6, 0.3, 0.1]])
    source = np.array([0.6, 0.3, 0.1])  # trained on these class frequencies
    uniform = np.full(3, 1 / 3)
    # p * target / source = (1/3, 1/3, 1/3): the model only repeated the prior
    np.testing.assert_allclose(correct_prior(probs, source=source, target=uniform), [[1 / 3] * 3])
    corrected = correct_prior(
        np.array([[0.5, 0.25, 0.25]]),
        source=np.array([0.5, 0.25, 0.25]),
        target=np.array([0.25, 0.25, 0.5]),
    )
    # (0.5 * 0.5, 0.25 * 1, 0.25 * 2) = (0.25, 0.25, 0.5)
    np.testing.assert_allclose(corrected, [[0.25, 0.25, 0.5]])
    assert corrected.sum() == pytest.approx(1.0)


def test_training_prior_counts_labels_and_is_uniform_when_balanced():
    classes = np.array([1, 2, 5])
    np.testing.assert_allclose(
        training_prior(np.array([1, 1, 2, 1, 5, 5]), classes), [0.5, 1 / 6, 1 / 3]
    )
    np.testing.assert_allclose(training_prior(np.array([1, 1, 1]), classes), [0.6, 0.2, 0.2])
    np.testing.assert_allclose(training_prior(np.array([1]), classes, balanced=True), [1 / 3] * 3)


def test_target_prior_uniform_or_from_a_csv(tmp_path):
    np.testing.assert_allclose(read_target_prior("uniform", CLASSES), [0.5, 0.5])
    path = tmp_path / "prior.csv"
    path.write_text("label_id,prior\n7,30\n3,10\n")
    np.testing.assert_allclose(read_target_prior(str(path), CLASSES), [0.25, 0.75])
    path.write_text("label_id,prior\n7,30\n")
    with pytest.raises(UserError, match=r"no prior for label_id \[3\]"):
        read_target_prior(str(path), CLASSES)


def test_top3_accuracy_by_hand():
    probs = np.array([[0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    assert top_k_accuracy(probs, np.array([2, 3, 0]), 3) == pytest.approx(1 / 3)
    assert top_k_accuracy(probs[:, :2], np.array([1, 1, 0]), 3) == 1.0  # k capped at classes
    # per row; a tie goes to the lower column, so column 3 of [0.25]*4 is 4th
    assert top_k_hits(probs, np.array([2, 3, 0]), 3).tolist() == [True, False, False]
    assert top_k_hits(np.full((1, 4), 0.25), np.array([3]), 3).tolist() == [False]


def test_score_reports_raw_clipped_and_prior_corrected():
    probs = np.array([[0.7, 0.3], [0.6, 0.4]])
    columns = np.array([0, 1])
    scores = score(
        probs,
        columns,
        low=0.01,
        high=0.99,
        source=np.array([0.7, 0.3]),
        target=np.array([0.5, 0.5]),
    )
    assert scores["accuracy"] == 0.5  # row 2 is wrong until the prior is divided out
    assert scores["accuracy_prior"] == 1.0  # row 1 ties at (0.5, 0.5): column 0, right
    # corrected rows: (0.5, 0.5) and (0.6/0.7, 0.4/0.3) renormalised
    second = (0.4 / 0.3) / (0.6 / 0.7 + 0.4 / 0.3)
    assert scores["log_loss_prior"] == pytest.approx(-(np.log(0.5) + np.log(second)) / 2)
    assert {"top3_accuracy", "log_loss_clipped", "log_loss_prior_clipped"} <= set(scores)


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


def test_fallback_class_is_the_most_probable_under_the_prior():
    assert most_probable_column(np.array([0.2, 0.5, 0.3]), np.array([0.6, 0.2, 0.2])) == 1
    # a uniform prior ties: the most frequent training class wins
    assert most_probable_column(np.full(3, 1 / 3), np.array([0.2, 0.2, 0.6])) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"label_id,prior\n3,\xff\n", "target prior is not UTF-8 text (line 2, byte 17"),
        (b"label_id,prior\n3,lots\n7,1\n", "line 2: prior 'lots' is not a number"),
        (b"label,prior\n3,1\n", "target prior needs the columns label_id,prior; found label,prior"),
    ],
)
def test_a_malformed_target_prior_is_one_line(tmp_path, text, message):
    path = tmp_path / "prior.csv"
    path.write_bytes(text)
    with pytest.raises(UserError, match=re.escape(message)):
        read_target_prior(str(path), CLASSES)


@pytest.mark.parametrize(
    ("low", "high", "classes"), [(0.5, 0.99, 3), (0.001, 0.3, 3), (0.5, 0.9, 2), (0.01, 0.1, 10)]
)
def test_clip_bounds_that_flatten_every_row_are_refused(low, high, classes):
    with pytest.raises(ParamError) as error:
        clip_probs(np.eye(classes), low=low, high=high)
    assert str(error.value).startswith(
        f"clip_low = {low} and clip_high = {high} are not allowed with {classes} classes: "
        f"expected clip_low < 1/{classes} = "
    )
    check_clip_bounds(low=0.01 / classes, high=0.99, n_classes=classes)  # the advice is fine
