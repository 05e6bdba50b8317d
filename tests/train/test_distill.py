"""lib.train.distill: targets mixed from the true labels and a finished run's out-of-fold
predictions, read from a real run folder, and the refusal of a teacher with other folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.common.errors import UserError
from lib.common.images import list_test_images
from lib.infer.predictions import load_predictions, save_predictions
from lib.prepare.folds import HOLDOUT
from lib.train.distill import check_same_folds, distill_targets
from lib.train.distributed import Dist
from lib.train.fold import fold_data
from lib.train.source_run import read_source_run
from lib.train.teaching import load_teaching
from tests.train.test_fold import STATS, config, folds_table
from tests.train.test_pseudo import CLASSES, TEST_PROBS, write_run


@pytest.fixture
def teacher(image_tree, tmp_path) -> Path:
    _, ids = list_test_images(image_tree / "test")
    return write_run(
        tmp_path / "teacher", folds_table(image_tree), test_probs=TEST_PROBS, test_ids=ids, seed=7
    )


def training_rows(image_tree: Path, fold: int):
    folds = folds_table(image_tree)
    return folds[(folds["fold"] != fold) & (folds["fold"] != HOLDOUT)].reset_index(drop=True)


def one_hot(rows) -> np.ndarray:
    return np.eye(len(CLASSES))[[CLASSES.index(int(label)) for label in rows["label"]]]


def teacher_rows(teacher: Path, rows) -> np.ndarray:
    """The teacher's OOF row of each of `rows`, read straight from its files."""
    found = {}
    for path in teacher.glob("fold*/oof.npz"):
        oof = load_predictions(path)
        for s, i, probs in zip(oof.splits, oof.image_ids, oof.probs, strict=True):
            found[(s, i)] = probs
    return np.array([found[(s, i)] for s, i in zip(rows["split"], rows["image_id"], strict=True)])


def test_targets_mix_the_label_and_the_oof_row_and_sum_to_one(image_tree, teacher):
    source = read_source_run("distill_from", str(teacher))
    rows = training_rows(image_tree, 0)
    hard = distill_targets(source, rows, classes=CLASSES, alpha=1.0)
    assert np.array_equal(hard, one_hot(rows))  # alpha 1: the one-hot, exactly
    for alpha in (0.0, 0.3, 0.7):
        mixed = distill_targets(source, rows, classes=CLASSES, alpha=alpha)
        assert mixed.dtype == np.float32 and np.allclose(mixed.sum(axis=1), 1.0, atol=1e-6)
        expected = alpha * one_hot(rows) + (1 - alpha) * teacher_rows(teacher, rows)
        assert np.allclose(mixed, expected, atol=1e-6)


def test_the_fold_trains_on_distilled_targets_and_validates_on_labels(image_tree, teacher):
    folds = folds_table(image_tree)
    teaching = load_teaching(
        config(
            pseudo_from=None,
            pseudo_threshold=0.9,
            pseudo_weight=1.0,
            pseudo_soft=False,
            distill_from=str(teacher),
            distill_alpha=0.7,
        ),
        folds=folds,
        fold=1,
        test_dir=image_tree / "test",
    )
    data = fold_data(
        folds, 1, images_dir=image_tree, stats=STATS, config=config(), env=Dist(), teaching=teaching
    )
    rows = training_rows(image_tree, 1)
    expected = 0.7 * one_hot(rows) + 0.3 * teacher_rows(teacher, rows)
    assert np.allclose(data.train.dataset.rows.numpy(), expected, atol=1e-6)
    assert data.val.dataset.targets == [
        CLASSES.index(label) for label in folds.loc[folds["fold"] == 1, "label"]
    ]
    assert teaching.provenance()["distill"]["alpha"] == 0.7


def refusal(teacher: Path, image_tree: Path, fold: int = 0) -> str:
    with pytest.raises(UserError) as err:
        load_teaching(
            config(
                pseudo_from=None,
                pseudo_threshold=0.9,
                pseudo_weight=1.0,
                pseudo_soft=False,
                distill_from=str(teacher),
                distill_alpha=0.7,
            ),
            folds=folds_table(image_tree),
            fold=fold,
            test_dir=image_tree / "test",
        )
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"distill_from = {teacher}")
    return message


def test_a_teacher_with_other_folds_is_refused_in_one_line(image_tree, tmp_path):
    folds = folds_table(image_tree)
    moved = folds.copy()
    one, two = moved.index[moved["fold"] == 0][0], moved.index[moved["fold"] == 1][0]
    moved.loc[[one, two], "fold"] = [1, 0]  # two images swap folds: the same images overall
    teacher = write_run(tmp_path / "t", moved, test_probs=TEST_PROBS, test_ids=["1", "2", "3", "4"])
    message = refusal(teacher, image_tree)
    assert "holds other images than fold 0 of data/folds.csv" in message
    assert "same folds" in message


def test_a_teacher_lacking_a_fold_this_fold_trains_on_is_refused(image_tree, teacher):
    (teacher / "fold1" / "oof.npz").unlink()
    (teacher / "fold1" / "test.npz").unlink()
    (teacher / "fold1").rmdir()
    message = refusal(teacher, image_tree, fold=0)
    assert "no out-of-fold predictions for fold(s) [1]" in message and "(it has [0])" in message
    # fold 1 trains on fold 0 only, which the teacher has
    folds = folds_table(image_tree)
    check_same_folds(read_source_run("distill_from", str(teacher)), folds, fold=1)


def test_a_teacher_of_other_labels_or_classes_is_refused(image_tree, teacher, tmp_path):
    path = teacher / "fold0" / "oof.npz"
    oof = load_predictions(path)
    oof.targets[0] = 3 if oof.targets[0] != 3 else 1
    save_predictions(path, oof)
    assert "other labels there than in data/folds.csv" in refusal(teacher, image_tree)

    four = write_run(
        tmp_path / "four",
        folds_table(image_tree),
        test_probs=np.full((4, 4), 0.25),
        test_ids=["1", "2", "3", "4"],
        classes=[1, 2, 3, 4],
    )
    assert "other classes" in refusal(four, image_tree)
