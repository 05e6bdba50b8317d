import csv

import numpy as np

from lib.predictions import Predictions, load_predictions, save_predictions
from lib.submission import most_common_label, predicted_labels, write_label_submission


def test_submission_has_every_test_id_in_order_and_fills_missing(tmp_path):
    predictions = Predictions(np.array([[0.1, 0.9], [0.8, 0.2]], np.float32), np.array([5, 2]),
                              np.array([11, 12]))
    path = tmp_path / "sub" / "submission.csv"
    filled = write_label_submission(path, test_ids=[2, 9, 5], labels=predicted_labels(predictions),
                                    fallback_label=12)
    rows = list(csv.reader(path.open()))
    assert rows == [["id", "predicted"], ["2", "11"], ["9", "12"], ["5", "12"]]
    assert filled == 1
    assert [p.name for p in path.parent.iterdir()] == ["submission.csv"]  # no temp file left


def test_most_common_label():
    assert most_common_label(np.array([4, 2, 4, 1])) == 4


def test_predictions_round_trip_with_ids_and_classes(tmp_path):
    original = Predictions(np.random.default_rng(0).random((3, 2)).astype(np.float32),
                           np.array([7, 8, 9]), np.array([1, 2]),
                           splits=np.array(["train", "validation", "train"]),
                           targets=np.array([1, 2, 2]))
    save_predictions(tmp_path / "oof.npz", original)
    loaded = load_predictions(tmp_path / "oof.npz")
    for name in ("probs", "image_ids", "classes", "splits", "targets"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert loaded.probs.dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oof.npz"]
