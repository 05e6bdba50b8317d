import numpy as np
import pytest
from scipy.optimize import check_grad

from lib.common.errors import UserError
from lib.infer import weights as weights_module
from lib.infer.combine import merge_probs
from lib.infer.metrics import log_loss
from lib.infer.predictions import Predictions, save_predictions
from lib.infer.runs import RunPredictions
from lib.infer.weights import (
    _geomean_loss,
    _mean_loss,
    fit_run_weights,
    fit_weights,
    fold_of_rows,
    nested_blend,
    nesting_groups,
)

HOWS = ("mean", "geomean")


def calibrated_and_noise(n: int = 3000, classes: int = 5, seed: int = 0):
    """A calibrated member (its probabilities are the posterior the labels are drawn from) and
    a member of pure noise."""
    rng = np.random.default_rng(seed)
    posterior = rng.dirichlet(np.ones(classes), n)
    labels = (posterior.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return posterior, rng.dirichlet(np.ones(classes), n), labels


def right_on_own_share(shares: list[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """Members each certain of the truth (column 0) on their own rows and certain of a wrong
    column elsewhere: the blend's truth probability on member m's rows is w_m, so the log loss
    is minimised by the weights equal to the shares of rows."""
    owner = np.repeat(np.arange(len(shares)), shares)
    probs = []
    for m in range(len(shares)):
        p = np.zeros((len(owner), len(shares) + 1))
        p[owner == m, 0] = 1.0
        p[owner != m, 1 + m] = 1.0
        probs.append(p)
    return probs, np.zeros(len(owner), dtype=np.int64)


@pytest.mark.parametrize("how", HOWS)
def test_an_informative_member_takes_the_weight_from_noise(how):
    informative, noise, labels = calibrated_and_noise()
    fitted = fit_weights([noise, informative], labels, how=how)
    assert fitted[1] > 0.97
    assert (fitted >= 0).all() and fitted.sum() == pytest.approx(1.0)


def test_mean_weights_recover_each_members_share_of_rows():
    probs, columns = right_on_own_share([500, 300, 200])
    np.testing.assert_allclose(fit_weights(probs, columns, how="mean"), [0.5, 0.3, 0.2], atol=1e-4)


def test_geomean_weights_recover_the_temperature_of_an_overconfident_member():
    # the geometric mean of softmax(2z) and a uniform member, weights w and 1 - w, is
    # softmax(2wz): w = 0.5 gives back the posterior softmax(z) the labels are drawn from
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20000, 4)) * 2
    posterior = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (posterior.cumsum(axis=1) > rng.random((len(logits), 1))).argmax(axis=1)
    sharp = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)
    uniform = np.full_like(sharp, 0.25)
    np.testing.assert_allclose(
        fit_weights([sharp, uniform], labels, how="geomean"), [0.5, 0.5], atol=0.03
    )


@pytest.mark.parametrize("how", HOWS)
def test_fitted_weights_beat_equal_weights_and_every_single_member(how):
    informative, noise, labels = calibrated_and_noise(seed=2)
    rng = np.random.default_rng(3)
    middling = 0.5 * informative + 0.5 * rng.dirichlet(np.ones(5), len(labels))
    probs = [informative, noise, middling]
    fitted = fit_weights(probs, labels, how=how)
    assert (fitted >= 0).all() and fitted.sum() == pytest.approx(1.0)
    best = log_loss(merge_probs(probs, how=how, weights=fitted), labels)
    for candidate in [None, *np.eye(3)]:
        assert best <= log_loss(merge_probs(probs, how=how, weights=candidate), labels) + 1e-9


@pytest.mark.parametrize("make_loss", [_mean_loss, _geomean_loss])
def test_objective_gradients_match_finite_differences(make_loss):
    informative, noise, labels = calibrated_and_noise(n=500)
    loss = make_loss([informative, noise, 0.5 * (informative + noise)], labels)
    error = check_grad(lambda w: loss(w)[0], lambda w: loss(w)[1], np.array([0.2, 0.5, 0.3]))
    assert error < 1e-5


def test_one_member_gets_the_whole_weight_and_a_bad_merge_is_refused():
    informative, _, labels = calibrated_and_noise(n=50)
    assert fit_weights([informative], labels).tolist() == [1.0]
    with pytest.raises(ValueError, match="how must be one of"):
        fit_weights([informative, informative], labels, how="median")


def test_nested_weights_never_see_the_rows_they_score():
    # member 0 is right on folds 1 and 2 only and wrong on fold 0, as a model is right on rows
    # it memorised and wrong on new ones; member 1 is right on fold 0 only. A blend fitted on
    # every row weighs member 0 by its 2/3 share of rows; fold 0's weights, fitted on folds 1
    # and 2 alone, put everything on member 0 and score fold 0 as badly as it deserves.
    probs, columns = right_on_own_share([600, 300])
    groups = np.repeat([1, 2, 0], 300)
    blended, fold_weights = nested_blend(probs, columns, groups, how="mean")
    np.testing.assert_allclose(fold_weights[0], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(fit_weights(probs, columns), [2 / 3, 1 / 3], atol=1e-4)
    held = groups == 0
    assert log_loss(blended[held], columns[held]) > 30  # -log(1e-15): each row a sure mistake


def test_nested_fits_are_given_only_the_other_groups_rows(monkeypatch):
    probs, columns = right_on_own_share([40, 30, 30])
    row_ids = np.arange(len(columns), dtype=np.float64)
    probs = [np.column_stack([p, row_ids]) for p in probs]  # a column naming each row
    groups = np.arange(len(columns)) % 3
    seen = []
    real_fit = weights_module.fit_weights

    def spy(parts, cols, *, how="mean"):
        seen.append(set(parts[0][:, -1].astype(int).tolist()))
        return real_fit(parts, cols, how=how)

    monkeypatch.setattr(weights_module, "fit_weights", spy)
    _, fold_weights = nested_blend(probs, columns, groups)
    assert sorted(fold_weights) == [0, 1, 2]
    for group, rows in zip([0, 1, 2], seen, strict=True):
        assert rows == set(np.flatnonzero(groups != group).tolist())


def test_one_fold_is_split_into_seeded_groups_for_nesting():
    assert nesting_groups(np.array([2, 0, 2, 0])).tolist() == [2, 0, 2, 0]
    groups = nesting_groups(np.zeros(23, dtype=np.int64))
    assert sorted(np.bincount(groups).tolist()) == [4, 4, 5, 5, 5]
    assert groups.tolist() == nesting_groups(np.zeros(23, dtype=np.int64)).tolist()
    with pytest.raises(ValueError, match="two or more groups"):
        nested_blend([np.ones((3, 2)) / 2], np.zeros(3, dtype=np.int64), np.zeros(3))


CLASSES = np.array([1, 2, 3])


def write_run(folder, fold_rows: dict[int, list[int]], probs_of, targets: dict[int, int]):
    """A predictions/ folder: fold<k>/oof.npz for the rows (image ids) of each fold, and a
    test.npz; `probs_of(image_id)` gives a row's probabilities."""
    for fold, ids in fold_rows.items():
        save_predictions(
            folder / f"fold{fold}" / "oof.npz",
            Predictions(
                np.array([probs_of(i) for i in ids], np.float32),
                np.array(ids),
                CLASSES,
                splits=np.array(["train"] * len(ids)),
                targets=np.array([targets[i] for i in ids]),
                prior=np.full(3, 1 / 3),
            ),
        )
        save_predictions(
            folder / f"fold{fold}" / "test.npz",
            Predictions(np.full((2, 3), 1 / 3, np.float32), np.array([100, 101]), CLASSES),
        )


def test_fit_run_weights_matches_rows_by_id_and_names_each_members_weight(tmp_path):
    rng = np.random.default_rng(4)
    ids = list(range(60))
    targets = {i: int(rng.integers(1, 4)) for i in ids}
    good = {i: np.eye(3)[targets[i] - 1] * 0.8 + 0.2 / 3 for i in ids}
    noisy = {i: rng.dirichlet(np.ones(3)) for i in ids}
    # this run's folds hold other rows than the member's: rows are matched by id, not order
    write_run(tmp_path / "this", {0: ids[::2], 1: ids[1::2]}, lambda i: noisy[i], targets)
    write_run(tmp_path / "good", {0: ids[:30], 1: ids[30:]}, lambda i: good[i], targets)
    runs = [RunPredictions(tmp_path / "this"), RunPredictions(tmp_path / "good", name="exp-a")]
    fit = fit_run_weights(runs, how="mean")
    assert fit.weights[1] > 0.9 and fit.weights.sum() == pytest.approx(1.0)
    assert sorted(fit.fold_weights) == [0, 1]  # this run's folds nest the fit
    metrics = fit.metrics()
    assert list(metrics["weights"]) == [str(tmp_path / "this"), "exp-a"]
    assert metrics["nested_oof"]["log_loss"] < metrics["equal_oof"]["log_loss"]
    assert metrics["nested_oof"]["accuracy"] == pytest.approx(1.0)
    # rows in (split, id) order, every one
    assert fit.nested.image_ids.tolist() == [str(i) for i in ids]
    assert fold_of_rows(fit.nested, runs[0].fold_oof).tolist() == [i % 2 for i in ids]


def test_fit_run_weights_names_a_member_that_predicted_other_rows(tmp_path):
    targets = {i: 1 for i in range(6)}
    write_run(tmp_path / "this", {0: [0, 1, 2], 1: [3, 4, 5]}, lambda i: [0.5, 0.3, 0.2], targets)
    write_run(tmp_path / "other", {0: [0, 1, 2]}, lambda i: [0.5, 0.3, 0.2], targets)
    runs = [RunPredictions(tmp_path / "this"), RunPredictions(tmp_path / "other", name="exp-b")]
    with pytest.raises(UserError, match="^exp-b: predicted other images"):
        fit_run_weights(runs)
