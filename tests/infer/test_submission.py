import csv
import json
import re

import numpy as np
import pytest

from lib.acquire.layouts import read_competition
from lib.common.errors import UserError
from lib.infer.predictions import Predictions, load_predictions, save_predictions
from lib.infer.submission import (
    build_submission,
    check_submission,
    competition_layout,
    make_layout,
    read_class_names,
    write_submission,
)

CLASSES = np.array([11, 12, 13])
NAMES = {11: "cat", 12: "dog", 13: "fox"}


def predictions_of(ids=(5, 2)) -> Predictions:
    probs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], np.float32)[: len(ids)]
    return Predictions(probs, np.array(ids), CLASSES)


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_label_submission_has_every_test_id_in_order_and_fills_missing(tmp_path):
    layout = make_layout("label", test_ids=[2, 9, 5], labels=CLASSES)
    frame, filled = build_submission(
        layout, predictions_of(), fallback_probs=np.array([0.2, 0.3, 0.5]), fallback_column=2
    )
    path = tmp_path / "sub" / "submission.csv"
    write_submission(path, frame, layout)
    assert rows_of(path) == [["id", "predicted"], ["2", "11"], ["9", "13"], ["5", "12"]]
    assert filled == 1  # id 9 had no image: the most probable class under the prior
    assert [p.name for p in path.parent.iterdir()] == ["submission.csv"]  # no temp file left
    assert check_submission(path, layout) == []


def test_proba_submission_round_trip_with_class_names(tmp_path):
    layout = make_layout("proba", test_ids=[2, 9, 5], labels=CLASSES, names=NAMES)
    assert layout.header == ["id", "cat", "dog", "fox"]
    prior = np.array([0.2, 0.3, 0.5])
    frame, filled = build_submission(
        layout, predictions_of(), fallback_probs=prior, fallback_column=2
    )
    path = tmp_path / "submission.csv"
    write_submission(path, frame, layout)
    rows = rows_of(path)
    assert rows[0] == ["id", "cat", "dog", "fox"] and [r[0] for r in rows[1:]] == ["2", "9", "5"]
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(values[1], prior, atol=1e-6)  # the missing image: the prior
    np.testing.assert_allclose(values[2], [0.1, 0.7, 0.2], atol=1e-6)
    assert filled == 1
    assert check_submission(path, layout) == []


def test_proba_column_for_a_class_the_models_never_saw_is_zero_then_renormalised():
    layout = make_layout("proba", test_ids=[5], labels=[11, 12, 13, 14])
    frame, _ = build_submission(
        layout, predictions_of((5,)), fallback_probs=np.ones(3) / 3, fallback_column=0
    )
    assert list(frame.columns) == ["id", "11", "12", "13", "14"]
    assert frame["14"].tolist() == [0.0] and frame.iloc[0, 1:].sum() == pytest.approx(1.0)


def test_sample_submission_fixes_ids_columns_and_row_order(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,fox,cat,dog\n5,0.3,0.3,0.4\n9,0.3,0.3,0.4\n2,0.3,0.3,0.4\n")
    layout = make_layout("proba", test_ids=[2, 5, 9], labels=CLASSES, names=NAMES, sample=sample)
    frame, _ = build_submission(
        layout, predictions_of(), fallback_probs=np.ones(3) / 3, fallback_column=0
    )
    assert list(frame.columns) == ["id", "fox", "cat", "dog"]
    assert frame["id"].tolist() == ["5", "9", "2"]
    np.testing.assert_allclose(frame.iloc[0, 1:].to_numpy(float), [0.2, 0.1, 0.7], atol=1e-6)


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        (
            "id,cat,dog,fox\n2,1,0,0\n5,1,0,0\n7,1,0,0\n",
            "proba",
            r"ids do not match the test images: 1 not among them \(7\), "
            r"1 test images missing \(9\)",
        ),
        (
            "id,cat,dog,wolf\n2,1,0,0\n5,1,0,0\n9,1,0,0\n",
            "proba",
            r"columns do not match the classes: 1 unknown \(wolf\), "
            r"1 classes without a column \(fox\)",
        ),
        ("id,cat,dog,fox\n2,1,0,0\n5,1,0,0\n9,1,0,0\n", "label", "is submission_format proba"),
        ("id,predicted\n2,1\n2,1\n5,1\n9,1\n", "label", r"1 repeated \(2\)"),
    ],
)
def test_sample_submission_mismatch_is_a_clear_error(tmp_path, text, fmt, message):
    sample = tmp_path / "sample.csv"
    sample.write_text(text)
    with pytest.raises(UserError, match=message) as error:
        make_layout(fmt, test_ids=[2, 5, 9], labels=CLASSES, names=NAMES, sample=sample)
    assert str(sample) in str(error.value) and "\n" not in str(error.value)


def test_check_lists_everything_kaggle_would_reject_in_a_label_file(tmp_path):
    layout = make_layout("label", test_ids=[1, 2, 3, 4], labels=CLASSES)
    path = tmp_path / "bad.csv"
    path.write_text("id,label\n1,11\n1,12\n2,99\n5,13\n3,\nx.1,11\n")
    problems = "\n".join(check_submission(path, layout))
    assert "header is id, label; expected id, predicted" in problems
    assert "1 missing ids: 4" in problems
    assert "1 duplicate ids: 1" in problems
    assert "1 ids not in the test set: 5" in problems
    assert (
        "1 malformed ids (an id is letters, digits, - and _, optionally with the image's "
        "extension; Kaggle matches ids as text) "
        "(line 7: 'x.1')" in problems
    )
    assert "1 labels missing, NaN or not integers (line 6: '')" in problems
    assert "1 unknown labels (line 4: 99; allowed: 11..13)" in problems


def test_check_lists_everything_kaggle_would_reject_in_a_proba_file(tmp_path):
    layout = make_layout("proba", test_ids=[1, 2, 3, 4], labels=CLASSES, names=NAMES)
    path = tmp_path / "bad.csv"
    path.write_text(
        "id,cat,dog,wolf\n1,0.2,0.3,0.5\n2,nan,0.5,0.5\n3,0.5,0.6,0.1\n4,-0.1,0.6,0.5\n4,0.2,0.2\n"
    )
    problems = "\n".join(check_submission(path, layout))
    assert "1 unknown columns: wolf" in problems and "1 missing class columns: fox" in problems
    assert "1 rows without 4 fields (lines 6)" in problems
    assert "1 duplicate ids: 4" in problems
    assert "rows with a missing, NaN or non-numeric probability (lines 3)" in problems
    assert "1 rows with a probability outside [0, 1] (lines 5)" in problems
    assert "1 rows not summing to 1 (+-0.001) (line 4: 1.2000)" in problems


def test_write_refuses_a_submission_kaggle_would_reject(tmp_path):
    layout = make_layout("proba", test_ids=[2, 5], labels=CLASSES)
    frame, _ = build_submission(
        layout, predictions_of(), fallback_probs=np.ones(3) / 3, fallback_column=0
    )
    frame.iloc[0, 1] = float("nan")
    path = tmp_path / "submission.csv"
    with pytest.raises(UserError, match="would be rejected: 1 rows with a missing, NaN"):
        write_submission(path, frame, layout)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_class_names_file(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("label_id,name\n11,cat\n12,dog\n")
    assert read_class_names(path) == {11: "cat", 12: "dog"}
    path.write_text("label_id,name\n11,cat\n12,cat\n")
    with pytest.raises(UserError, match="distinct"):
        read_class_names(path)


def test_predictions_round_trip_with_ids_and_classes(tmp_path):
    original = Predictions(
        np.random.default_rng(0).random((3, 2)).astype(np.float32),
        np.array([7, 8, 9]),
        np.array([1, 2]),
        splits=np.array(["train", "validation", "train"]),
        targets=np.array([1, 2, 2]),
        prior=np.array([0.25, 0.75]),
    )
    save_predictions(tmp_path / "oof.npz", original)
    loaded = load_predictions(tmp_path / "oof.npz")
    for name in ("probs", "image_ids", "classes", "splits", "targets", "prior"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert loaded.probs.dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oof.npz"]


def write_split(path, labels_by_id=None, ids=()):
    """A split JSON: labelled when `labels_by_id` is given, else test ids."""
    ids = list(labels_by_id or ids)
    document = {"images": [{"url": [f"file:{i}.png"], "image_id": i} for i in ids]}
    if labels_by_id is not None:
        document["annotations"] = [
            {"image_id": i, "label_id": label} for i, label in labels_by_id.items()
        ]
    path.write_text(json.dumps(document))


def test_competition_layout_has_every_label_of_the_competition(tmp_path):
    # the ensemble and the check build the same layout: test.json's ids and every label of
    # train.json and validation.json, even one whose images all failed to download
    write_split(tmp_path / "train.json", {1: 11, 2: 12})
    write_split(tmp_path / "validation.json", {3: 13})
    write_split(tmp_path / "test.json", ids=(7, 5))
    layout = competition_layout("proba", read_competition(tmp_path), names=None, sample=None)
    assert layout.header == ["id", "11", "12", "13"] and layout.ids == ["5", "7"]
    assert layout.labels == [11, 12, 13]
    # the models' classes join them (a label only the models know still gets its column)
    extra = competition_layout(
        "label", read_competition(tmp_path), names=None, sample=None, extra_labels=np.array([14])
    )
    assert extra.header == ["id", "predicted"] and extra.labels == [11, 12, 13, 14]
    # a classes file gives the classes and their names; validation.json may be absent
    (tmp_path / "validation.json").unlink()
    classes = tmp_path / "classes.csv"
    classes.write_text("label_id,name\n11,cat\n12,dog\n13,fox\n")
    named = competition_layout(
        "proba", read_competition(tmp_path), names=read_class_names(classes), sample=None
    )
    assert named.header == ["id", "cat", "dog", "fox"] and named.labels == [11, 12, 13]
    unnamed = competition_layout("proba", read_competition(tmp_path), names=None, sample=None)
    assert unnamed.labels == [11, 12]


GARBAGE = b"label_id,name\n1,cat\n\xff\xd8\xff\xe0 binary \x00\x9c\n"


@pytest.mark.parametrize(
    ("read", "what"),
    [
        (read_class_names, "classes file"),
        (
            lambda path: make_layout("label", test_ids=[1], labels=CLASSES, sample=path),
            "sample submission",
        ),
        (
            lambda path: check_submission(path, make_layout("label", test_ids=[1], labels=CLASSES)),
            "submission",
        ),
    ],
)
def test_a_csv_that_is_not_utf8_is_one_line(tmp_path, read, what):
    path = tmp_path / "file.csv"
    path.write_bytes(GARBAGE)
    with pytest.raises(UserError) as error:
        read(path)
    assert str(error.value) == (
        f"{path}: {what} is not UTF-8 text (line 3, byte 20: invalid "
        "start byte); save it as a UTF-8 CSV"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,name\n11,cat\n", "classes file needs the columns label_id,name; found id,name"),
        ("", "classes file needs the columns label_id,name; found no header"),
        (
            "label_id,name\n11,cat,tabby\n",
            "line 2 of the classes file has 3 fields; its header has 2",
        ),
        (
            "label_id,name\n1x,cat\n",
            "line 2: label_id '1x' is not allowed: expected a non-negative",
        ),
    ],
)
def test_a_malformed_classes_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "classes.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        read_class_names(path)


def test_a_classes_file_from_a_spreadsheet_keeps_quoted_names(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_bytes('\ufefflabel_id,name\n11,"cat, tabby"\n\n12,dog\n'.encode())
    assert read_class_names(path) == {11: "cat, tabby", 12: "dog"}


def test_check_rejects_ids_kaggle_would_not_match(tmp_path):
    layout = make_layout("label", test_ids=[5001, 5002, 5003], labels=CLASSES)
    path = tmp_path / "submission.csv"
    path.write_text("id,predicted\n05001,11\n5002,11\n 5003,11\n")
    problems = check_submission(path, layout)
    # Kaggle matches ids as text: 05001 is another id than 5001, " 5003" no id at all
    assert (
        "1 malformed ids (an id is letters, digits, - and _, optionally with the image's "
        "extension; Kaggle matches ids as text) "
        "(line 4: ' 5003')" in problems
    )
    assert "1 ids not in the test set: 05001" in problems
    assert "2 missing ids: 5001, 5003" in problems


def test_string_ids_are_written_and_checked_exactly_as_spelt(tmp_path):
    ids = ["000bec180eb18c7604dcecc8fe0dba07", "5001", "a-b_c"]
    layout = make_layout("proba", test_ids=ids, labels=CLASSES, names=NAMES)
    test = Predictions(np.full((3, 3), 1 / 3, np.float32), np.array(ids[::-1]), CLASSES)
    frame, filled = build_submission(layout, test, fallback_probs=np.ones(3) / 3, fallback_column=0)
    write_submission(tmp_path / "s.csv", frame, layout)
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ids and filled == 0


def test_a_sample_submission_with_padded_ids_is_refused(tmp_path):
    sample = tmp_path / "sample.csv"
    sample.write_text("id,predicted\n2,11\n05,11\n")
    with pytest.raises(UserError, match=r"1 not among them \(05\), 1 test images missing"):
        make_layout("label", test_ids=[2, 5], labels=CLASSES, sample=sample)
    sample.write_text("id,predicted\n2,11\n5.0,11\n")
    with pytest.raises(UserError, match=r"line 3: id '5.0' is not allowed: expected an image id"):
        make_layout("label", test_ids=[2, 5], labels=CLASSES, sample=sample)


def test_a_header_of_one_column_is_reported_not_a_crash(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("0\n0\n")
    problems = check_submission(path, make_layout("label", test_ids=[0], labels=CLASSES))
    assert problems == ["header is 0; expected id, predicted"]


def test_topk_writes_the_k_best_names_and_the_check_knows_the_shape(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("Image,Id\n5.jpg,cat dog fox\n9.jpg,cat dog fox\n2.jpg,cat dog fox\n")
    layout = make_layout("topk", test_ids=[2, 5, 9], labels=CLASSES, sample=sample, k=2)
    layout.label_text = NAMES
    assert layout.test_ids == ["5", "9", "2"] and layout.ids == ["5.jpg", "9.jpg", "2.jpg"]
    frame, filled = build_submission(
        layout, predictions_of(), fallback_probs=np.array([0.2, 0.5, 0.3]), fallback_column=2
    )
    path = tmp_path / "submission.csv"
    write_submission(path, frame, layout)
    # 5: [0.1, 0.7, 0.2] -> dog fox; 9 has no image: the fallback column first, then the prior
    assert rows_of(path) == [
        ["Image", "Id"],
        ["5.jpg", "dog fox"],
        ["9.jpg", "fox dog"],
        ["2.jpg", "cat dog"],
    ]
    assert filled == 1
    path.write_text("Image,Id\n5.jpg,dog dog\n9.jpg,wolf\n2.jpg,cat dog fox\n7.jpg,\n")
    problems = "\n".join(check_submission(path, layout))
    assert "1 unknown labels (allowed: cat, dog, fox) (line 3: 'wolf')" in problems
    assert "1 rows with more than 2 labels (line 4: 3)" in problems
    assert "1 rows naming a label twice (lines 2)" in problems
    assert "1 rows with no label" in problems and "1 ids not in the test set: 7.jpg" in problems


def test_a_label_submission_of_names_with_ids_spelt_as_the_sample(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("file,species\n9.png,x\n2.png,x\n5.png,x\n")
    layout = make_layout("label", test_ids=[2, 5, 9], labels=CLASSES, sample=sample)
    layout.label_text = NAMES
    frame, _ = build_submission(
        layout, predictions_of(), fallback_probs=np.ones(3) / 3, fallback_column=0
    )
    path = tmp_path / "submission.csv"
    write_submission(path, frame, layout)
    assert rows_of(path) == [
        ["file", "species"],
        ["9.png", "cat"],
        ["2.png", "cat"],
        ["5.png", "dog"],
    ]
    layout.label_text = NAMES | {11: "tabby cat"}  # a name may hold a space
    path.write_text("file,species\n9.png,tabby cat\n2,cat\n5.png,11\n")
    problems = "\n".join(check_submission(path, layout))
    assert "1 missing ids: 2.png" in problems and "1 ids not in the test set: 2" in problems
    # `tabby cat` (line 2) is one label; `cat` is no longer one
    assert (
        "2 unknown labels (allowed: dog, fox, tabby cat) (line 3: 'cat', line 4: '11')" in problems
    )
