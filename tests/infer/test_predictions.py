import re
from pathlib import Path

import numpy as np
import pytest

from lib.common.errors import UserError
from lib.infer.predictions import (
    Predictions,
    check_test_ids,
    load_predictions,
    save_fold_predictions,
    training_prior,
)


def predictions(ids, value: float = 0.5) -> Predictions:
    return Predictions(
        np.full((len(ids), 2), value, np.float32), np.array(ids, np.int64), np.array([1, 2])
    )


def test_a_fold_is_written_as_one_unit(tmp_path):
    folder = tmp_path / "predictions" / "fold0"
    save_fold_predictions(folder, {"oof": predictions([1, 2], 0.3), "test": predictions([5])})
    assert sorted(p.name for p in folder.iterdir()) == ["oof.npz", "test.npz"]
    save_fold_predictions(folder, {"oof": predictions([1, 2], 0.7), "test": predictions([6])})
    assert load_predictions(folder / "oof.npz").probs[0, 0] == pytest.approx(0.7)
    assert load_predictions(folder / "test.npz").image_ids.tolist() == ["6"]
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["fold0"]


class Broken(Predictions):
    def __init__(self):
        pass

    @property
    def probs(self):
        raise RuntimeError("killed while writing the test predictions")


def test_a_failure_between_oof_and_test_leaves_the_old_pair(tmp_path):
    folder = tmp_path / "fold0"
    save_fold_predictions(folder, {"oof": predictions([1], 0.3), "test": predictions([5])})
    with pytest.raises(RuntimeError, match="killed"):
        save_fold_predictions(folder, {"oof": predictions([1], 0.9), "test": Broken()})
    assert load_predictions(folder / "oof.npz").probs[0, 0] == pytest.approx(0.3)
    assert load_predictions(folder / "test.npz").image_ids.tolist() == ["5"]
    assert [p.name for p in tmp_path.iterdir()] == ["fold0"]  # no temp folder left


@pytest.mark.parametrize(
    ("ids", "expected", "on_disk", "message"),
    [
        ([1, 2], [1, 2, 3], [1, 2], None),  # 3 failed to download: a fallback row, fine
        ([1, 2], [1, 2], None, None),  # no image folder to compare with
        ([1, 2], [11, 12], None, "2 ids not in test.json (1, 2)"),
        ([1, 2], [1, 2, 3], [1, 2, 3], "1 test images on disk without a prediction (3)"),
        ([], [1, 2], [], "no test image has a prediction"),
    ],
)
def test_test_predictions_must_match_the_current_test_images(ids, expected, on_disk, message):
    def check():
        check_test_ids(
            predictions(ids),
            expected=expected,
            on_disk=on_disk,
            source="predictions",
            rerun="dvc repro predict",
        )

    if message is None:
        check()
    else:
        with pytest.raises(UserError, match=rf"^predictions: .*{re.escape(message)}.*predict`$"):
            check()


def test_ids_compare_as_text_so_file_stems_match(tmp_path: Path):
    check_test_ids(predictions([7]), expected=[7], on_disk=["7"], source="p", rerun="r")


def test_training_prior_counts_labels_and_is_uniform_when_balanced():
    classes = np.array([1, 2, 5])
    np.testing.assert_allclose(
        training_prior(np.array([1, 1, 2, 1, 5, 5]), classes), [0.5, 1 / 6, 1 / 3]
    )
    np.testing.assert_allclose(training_prior(np.array([1, 1, 1]), classes), [0.6, 0.2, 0.2])
    np.testing.assert_allclose(training_prior(np.array([1]), classes, balanced=True), [1 / 3] * 3)
