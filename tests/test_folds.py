import pandas as pd
import pytest

from lib.errors import UserError
from lib.folds import COLUMNS, assign_folds, read_folds, scan_labelled, split_fold, summarize
from tests.conftest import write_image


def test_scan_reads_split_label_and_id_from_the_tree(image_tree):
    frame = scan_labelled(image_tree, ["train", "validation"])
    assert len(frame) == 22
    row = frame[(frame.split == "validation") & (frame.image_id == 21)].iloc[0]
    assert row.label == 2 and row.path == "validation/02/21.jpg"
    assert list(frame.split.unique()) == ["train", "validation"]


def test_scan_rejects_a_tree_that_is_not_imagefolder(tmp_path):
    write_image(tmp_path / "train" / "chairs" / "1.png")
    with pytest.raises(UserError, match="integer label and image_id"):
        scan_labelled(tmp_path, ["train"])
    with pytest.raises(UserError, match="no images found"):
        scan_labelled(tmp_path, ["validation"])


def test_folds_are_stratified_and_deterministic(image_tree):
    frame = scan_labelled(image_tree, ["train"])
    first = assign_folds(frame, folds=3, seed=7)
    assert list(first.columns) == COLUMNS
    assert first.equals(assign_folds(frame, folds=3, seed=7))
    assert not first.equals(assign_folds(frame, folds=3, seed=8))
    per_fold_class = first.groupby(["fold", "label"]).size()
    assert set(per_fold_class) == {2}  # 6 images per class over 3 folds
    assert "fold 0: 6 images, 3 classes, 2-2 per class" in summarize(first)


def test_too_many_folds_is_a_clear_error(image_tree):
    frame = scan_labelled(image_tree, ["train"])
    with pytest.raises(UserError, match="folds = 7 is more than the images of any class"):
        assign_folds(frame, folds=7, seed=0)


def test_split_fold_and_read_back(image_tree, tmp_path):
    frame = assign_folds(scan_labelled(image_tree, ["train"]), folds=3, seed=0)
    frame.to_csv(tmp_path / "folds.csv", index=False)
    train, held_out = split_fold(read_folds(tmp_path / "folds.csv"), 1)
    assert len(train) == 12 and len(held_out) == 6 and set(held_out.fold) == {1}
    with pytest.raises(UserError, match="fold 5 is not in folds.csv"):
        split_fold(frame, 5)
    pd.DataFrame({"image_id": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match="missing columns"):
        read_folds(tmp_path / "bad.csv")
