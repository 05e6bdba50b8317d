import pandas as pd
import pytest

from lib.common.errors import UserError
from lib.common.images import list_images
from lib.prepare.folds import (
    COLUMNS,
    HOLDOUT,
    assign_folds,
    describe,
    drop_unreadable,
    holdout_rows,
    read_folds,
    scan_labelled,
    split_fold,
    summarize,
)
from lib.prepare.stats import compute_stats
from tests.conftest import write_image


def test_scan_reads_split_label_and_id_from_the_tree(image_tree):
    frame = scan_labelled(image_tree, ["train", "validation"])
    assert len(frame) == 22
    row = frame[(frame.split == "validation") & (frame.image_id == "21")].iloc[0]
    assert row.label == 2 and row.path == "validation/02/21.jpg"
    assert list(frame.split.unique()) == ["train", "validation"]


def test_scan_rejects_a_tree_that_is_not_imagefolder(tmp_path):
    write_image(tmp_path / "train" / "chairs" / "1.png")
    with pytest.raises(UserError, match="an integer label and an image_id"):
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
    summary = summarize(first)
    assert summary["per_fold"]["fold0"] == {
        "images": 6,
        "classes": 3,
        "min_per_class": 2,
        "max_per_class": 2,
    }
    assert "fold0: 6 images, 3 classes, 2-2 per class" in describe(summary)


def labelled(labels):
    return pd.DataFrame(
        {
            "split": "train",
            "image_id": range(len(labels)),
            "label": labels,
            "path": [f"train/{label}/{i}.png" for i, label in enumerate(labels)],
        }
    )


def test_duplicate_groups_stay_in_one_fold():
    frame = labelled([1] * 9 + [2] * 9)
    groups = pd.Series(range(18))
    groups[[0, 5, 8]] = 100  # three copies of one label-1 image
    groups[[9, 17]] = 200  # two copies of one label-2 image
    result = assign_folds(frame, folds=3, seed=0, groups=groups)
    assert result.loc[[0, 5, 8], "fold"].nunique() == 1
    assert result.loc[[9, 17], "fold"].nunique() == 1
    summary = summarize(result)["duplicates"]
    assert summary == {"groups": 2, "images_in_groups": 5, "groups_with_conflicting_labels": 0}


def test_holdout_takes_validation_rows_and_their_duplicate_groups():
    frame = labelled([1] * 6 + [2] * 6)
    frame.loc[10:, "split"] = "validation"
    groups = pd.Series(range(12))
    groups[[3, 10]] = 50  # a train image identical to a validation image
    result = assign_folds(
        frame, folds=2, seed=0, groups=groups, holdout=frame["split"] == "validation"
    )
    assert set(result.loc[[3, 10, 11], "fold"]) == {HOLDOUT}
    assert (result.loc[result.index.difference([3, 10, 11]), "fold"] >= 0).all()
    assert len(holdout_rows(result)) == 3
    train, held_out = split_fold(result, 0)
    assert HOLDOUT not in set(train.fold) and HOLDOUT not in set(held_out.fold)
    assert "holdout" in summarize(result)["per_fold"]


def test_classes_smaller_than_folds_warn_and_still_get_folds(caplog):
    frame = labelled([1] * 10 + [2] * 10 + [3])
    result = assign_folds(frame, folds=5, seed=0)
    assert "1 classes have fewer images than folds=5: label 3 (1)" in caplog.text
    assert set(result.fold) == {0, 1, 2, 3, 4}
    assert result.loc[20, "fold"] in range(5)


def test_too_many_folds_is_a_clear_error(image_tree):
    frame = scan_labelled(image_tree, ["train"])
    with pytest.raises(UserError, match="folds = 7 is more than the images of any class"):
        assign_folds(frame, folds=7, seed=0)


def test_shared_with_test_is_counted():
    frame = assign_folds(labelled([1, 1, 2, 2]), folds=2, seed=0)
    summary = summarize(frame, hashes=pd.Series(["a", "b", "c", "d"]), test_hashes=["b", "z"])
    assert summary["duplicates"]["shared_with_test"] == 1


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


def damage(image_tree):
    """A truncated PNG (its header reads), an empty JPEG, HTML named .png: relative paths."""
    png = image_tree / "train" / "01" / "100.png"
    png.write_bytes(png.read_bytes()[:150])
    (image_tree / "train" / "02" / "201.png").write_bytes(b"")
    (image_tree / "validation" / "01" / "10.jpg").write_bytes(b"<html>gone</html>")
    return ["train/01/100.png", "train/02/201.png", "validation/01/10.jpg"]


def test_images_that_do_not_decode_are_left_out_and_named(image_tree, caplog):
    broken = damage(image_tree)
    frame = scan_labelled(image_tree, ["train", "validation"])
    kept, unreadable = drop_unreadable(frame, images_dir=image_tree, workers=2)
    assert unreadable == broken
    assert list(kept["path"]) == [path for path in frame["path"] if path not in broken]
    for path in broken:
        assert f"{image_tree / path}: left out of the folds, it does not decode" in caplog.text


def test_stats_and_folds_leave_out_the_same_images(image_tree):
    damage(image_tree)
    _, unreadable = drop_unreadable(
        scan_labelled(image_tree, ["train"]), images_dir=image_tree, workers=1
    )
    stats = compute_stats(list_images(image_tree / "train"), workers=1)
    assert stats.unreadable == [str(image_tree / path) for path in unreadable]


def test_a_truncated_jpeg_is_caught_at_reduced_size_too(tmp_path):
    path = write_image(tmp_path / "train" / "1" / "1.jpg", size=(400, 300))
    path.write_bytes(path.read_bytes()[:-4000])  # 400 px: decoded at 1/8 of its size
    write_image(tmp_path / "train" / "1" / "2.jpg", size=(400, 300))
    _, unreadable = drop_unreadable(
        scan_labelled(tmp_path, ["train"]), images_dir=tmp_path, workers=1
    )
    assert unreadable == ["train/1/1.jpg"]


def test_images_known_to_decode_are_not_decoded_again(image_tree, caplog):
    caplog.set_level("INFO")
    broken = damage(image_tree)
    frame = scan_labelled(image_tree, ["train", "validation"])
    # every image known: the broken ones too, so a decode would have left them out
    kept, unreadable = drop_unreadable(
        frame, images_dir=image_tree, workers=1, known=[True] * len(frame)
    )
    assert unreadable == [] and len(kept) == len(frame)
    assert f"{len(frame)} of {len(frame)} images known to decode" in caplog.text
    # only the unknown ones are decoded
    known = [path not in broken[:2] for path in frame["path"]]
    _, unreadable = drop_unreadable(frame, images_dir=image_tree, workers=1, known=known)
    assert unreadable == broken[:2]


def test_no_image_that_decodes_is_a_clear_error(tmp_path):
    (tmp_path / "train" / "1").mkdir(parents=True)
    (tmp_path / "train" / "1" / "1.png").write_bytes(b"")
    with pytest.raises(
        UserError,
        match=r"none of the 1 labelled images .* can be decoded, "
        r"e\.g\. .*1\.png",
    ):
        drop_unreadable(scan_labelled(tmp_path, ["train"]), images_dir=tmp_path, workers=1)
