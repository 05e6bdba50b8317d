"""The competition metrics against scikit-learn and against Kaggle's own worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score
from sklearn.metrics import log_loss as sk_log_loss

from lib.common.errors import UserError
from lib.infer.metrics import (
    METRICS,
    accuracy,
    differentiable,
    higher_is_better,
    map_at_k,
    map_at_k_lists,
    map_k,
    score_metric,
    target_columns,
    top_k_accuracy,
    top_k_columns,
    top_k_hits,
)
from lib.infer.metrics import log_loss as kaggle_log_loss

CLASSES = np.array([3, 7])


def random_case(seed: int, rows: int = 60, classes: int = 5):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(classes) * 0.7, size=rows)
    columns = rng.integers(0, classes, rows)
    # make the predictions informative, so every metric is away from its chance value
    probs[np.arange(rows) % 2 == 0, columns[np.arange(rows) % 2 == 0]] += 1.0
    return probs / probs.sum(axis=1, keepdims=True), columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_log_loss_and_f1_equal_scikit_learns(seed):
    probs, columns = random_case(seed)
    classes = np.array([1, 2, 3, 4, 5])
    predicted = probs.argmax(axis=1)
    assert score_metric("accuracy", probs, columns, classes) == pytest.approx(
        accuracy_score(columns, predicted)
    )
    assert score_metric("log_loss", probs, columns, classes) == pytest.approx(
        sk_log_loss(columns, probs, labels=range(5)), rel=1e-9
    )
    assert score_metric("f1_macro", probs, columns, classes) == pytest.approx(
        f1_score(columns, predicted, average="macro")
    )


def test_f1_macro_averages_over_the_classes_seen_as_scikit_learn_does():
    # class 3 is neither true nor predicted: not in the average; class 2 only predicted: F1 0
    probs = np.eye(4)[[0, 0, 1, 2, 1]]
    columns = np.array([0, 0, 1, 1, 1])
    expected = f1_score(columns, probs.argmax(axis=1), average="macro")
    assert score_metric("f1_macro", probs, columns, np.arange(4)) == pytest.approx(expected)
    assert expected == pytest.approx((1 + 0.8 + 0) / 3)


@pytest.mark.parametrize("seed", [0, 3])
def test_qwk_equals_cohen_kappa_with_quadratic_weights(seed):
    probs, columns = random_case(seed, classes=5)
    grades = np.array([0, 1, 2, 3, 4])  # APTOS's diagnosis grades
    expected = cohen_kappa_score(
        grades[columns], grades[probs.argmax(axis=1)], weights="quadratic", labels=grades
    )
    assert score_metric("qwk", probs, columns, grades) == pytest.approx(expected)


def test_qwk_weighs_by_distance_on_the_grade_scale_not_by_column():
    # columns in another order than the grades: the scale is the sorted label ids
    classes = np.array([3, 1, 2])
    truth_grades = np.array([1, 2, 3, 3, 1, 2])
    guess_grades = np.array([1, 3, 3, 2, 1, 1])
    column = {g: i for i, g in enumerate(classes)}
    probs = np.eye(3)[[column[g] for g in guess_grades]]
    columns = np.array([column[g] for g in truth_grades])
    expected = cohen_kappa_score(truth_grades, guess_grades, weights="quadratic")
    assert score_metric("qwk", probs, columns, classes) == pytest.approx(expected)


def test_qwk_reference_values():
    perfect = np.eye(3)[[0, 1, 2, 1]]
    assert score_metric("qwk", perfect, np.array([0, 1, 2, 1]), np.arange(3)) == 1.0
    reversed_ = np.eye(3)[[2, 1, 0]]
    assert score_metric("qwk", reversed_, np.array([0, 1, 2]), np.arange(3)) == pytest.approx(-1.0)


def test_map_at_k_by_kaggles_formula():
    # Kaggle's worked example (Humpback Whale evaluation page): truth w_1; guesses
    # [w_1, ...] -> 1, [x, w_1, ...] -> 1/2, [x, y, w_1] -> 1/3, absent -> 0
    predicted = [["w_1", "a", "b"], ["a", "w_1", "b"], ["a", "b", "w_1"], ["a", "b", "c"]]
    assert map_at_k_lists(predicted, ["w_1"] * 4, 3) == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    # only the first k guesses count, and a repeated guess counts once
    assert map_at_k_lists([["a", "b", "w_1"]], ["w_1"], 2) == 0.0
    assert map_at_k_lists([["a", "a", "w_1"]], ["w_1"], 5) == pytest.approx(1 / 3)


def test_map_at_k_of_probabilities_ranks_the_columns():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    columns = np.array([1, 2, 0, 1])
    # ranks of the truth: 1, 2, 3, 2 (the tie 0.4/0.4 goes to the lower column first)
    assert top_k_columns(probs, 2).tolist() == [[1, 2], [0, 2], [2, 1], [0, 1]]
    assert map_at_k(probs, columns, 3) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert (
        map_at_k(probs, columns, 1)
        == score_metric("accuracy", probs, columns, np.arange(3))
        == 0.25
    )
    assert score_metric("map@2", probs, columns, np.arange(3)) == pytest.approx(
        (1 + 1 / 2 + 0 + 1 / 2) / 4
    )


def test_direction_differentiability_and_k():
    assert [m for m in METRICS if not higher_is_better(m)] == ["log_loss"]
    assert [m for m in METRICS if differentiable(m)] == ["log_loss"]
    assert [map_k(m) for m in METRICS] == [None, None, 1, 2, 3, 4, 5, None, None]
    with pytest.raises(ValueError, match="map@6"):
        score_metric("map@6", np.eye(2), np.array([0, 1]), np.arange(2))


def test_log_loss_and_accuracy_by_hand():
    probs = np.array([[0.5, 0.5], [0.0, 1.0], [0.25, 0.75]])
    columns = np.array([0, 0, 1])
    expected = -(np.log(0.5) + np.log(1e-15) + np.log(0.75)) / 3
    assert kaggle_log_loss(probs, columns) == pytest.approx(expected)
    assert accuracy(probs, columns) == pytest.approx(2 / 3)  # argmax of a tie is column 0


def test_target_columns_and_unknown_label():
    assert target_columns(CLASSES, np.array([7, 3, 7])).tolist() == [1, 0, 1]
    with pytest.raises(UserError, match=r"labels \[5\]"):
        target_columns(CLASSES, np.array([5]))


def test_top3_accuracy_by_hand():
    probs = np.array([[0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    assert top_k_accuracy(probs, np.array([2, 3, 0]), 3) == pytest.approx(1 / 3)
    assert top_k_accuracy(probs[:, :2], np.array([1, 1, 0]), 3) == 1.0  # k capped at classes
    # per row; a tie goes to the lower column, so column 3 of [0.25]*4 is 4th
    assert top_k_hits(probs, np.array([2, 3, 0]), 3).tolist() == [True, False, False]
    assert top_k_hits(np.full((1, 4), 0.25), np.array([3]), 3).tolist() == [False]
