"""The submission shape against the metric and the sample submission, checked before work."""

from __future__ import annotations

import pytest

from lib.common.errors import UserError
from lib.infer.shapes import check_sample_shape, id_of_spelling, top_k


def test_ids_may_be_spelt_with_the_images_extension():
    assert id_of_spelling("2216849948.jpg") == "2216849948"
    assert id_of_spelling("0021e90e4.PNG") == "0021e90e4"
    assert id_of_spelling("5001") == "5001"
    assert id_of_spelling("x.1") is None and id_of_spelling("a b.jpg") is None
    assert id_of_spelling("../x.jpg") is None


def test_k_comes_from_map_at_k():
    assert top_k("topk", "map@5") == 5 and top_k("label", "map@5") == 1
    with pytest.raises(UserError, match="topk writes the k best labels of metric map@k"):
        top_k("topk", "accuracy")


@pytest.mark.parametrize(
    ("text", "fmt", "metric", "message"),
    [
        (
            "Image,Id\na.jpg,new_whale w_1 w_2 w_3 w_4\n",
            "label",
            "map@5",
            "cells hold 5 space-separated labels; submission_format label writes one: is "
            "submission_format topk",
        ),
        (
            "Image,Id\na.jpg,new_whale w_1 w_2 w_3 w_4\n",
            "topk",
            "map@3",
            "hold 5 space-separated labels; metric map@3 makes submission_format topk write 3",
        ),
        ("file,species\na.png,Maize\n", "proba", "accuracy", "is submission_format label or topk"),
        (
            "id,cat,dog\n1,0.5,0.5\n",
            "label",
            "accuracy",
            "has 3 columns; submission_format label writes 2",
        ),
        ("id\n1\n", "label", "accuracy", "needs a header of at least 2 columns"),
    ],
)
def test_a_sample_of_another_shape_is_refused_naming_it(tmp_path, text, fmt, metric, message):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text(text)
    with pytest.raises(UserError, match=message) as error:
        check_sample_shape(sample, submission_format=fmt, metric=metric)
    assert str(sample) in str(error.value)


@pytest.mark.parametrize(
    ("text", "fmt", "metric"),
    [
        ("Image,Id\na.jpg,new_whale w_1 w_2 w_3 w_4\n", "topk", "map@5"),
        ("Image,Id\na.jpg,new_whale\n", "topk", "map@5"),  # a sample may show one label only
        ("file,species\na.png,Maize\n", "label", "f1_macro"),
        ("id,cat,dog\n1,0.5,0.5\n", "proba", "log_loss"),
    ],
)
def test_a_sample_of_the_same_shape_passes(tmp_path, text, fmt, metric):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text(text)
    check_sample_shape(sample, submission_format=fmt, metric=metric)
    check_sample_shape(None, submission_format=fmt, metric=metric)


def test_a_label_name_with_a_space_is_one_label(tmp_path):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("file,species\n0021e90e4.png,Common Chickweed\n")
    labels = {"Common Chickweed", "Maize"}
    check_sample_shape(sample, submission_format="label", metric="f1_macro", labels=labels)
    with pytest.raises(UserError, match="is submission_format topk"):
        check_sample_shape(sample, submission_format="label", metric="f1_macro")
    with pytest.raises(UserError, match="'Common Chickweed' has one: Kaggle could not read it"):
        check_sample_shape(None, submission_format="topk", metric="map@3", labels=labels)
