"""lib.common.ids: which values are ids, their text, and the one order they sort in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.common.ids import (
    ALLOWED,
    INT64_MAX,
    id_order,
    id_problem,
    id_ranks,
    id_text,
    is_id_text,
    repeated_stem,
    sorted_ids,
)


@pytest.mark.parametrize(
    "value",
    [0, 5001, INT64_MAX, "000bec180eb18c7604dcecc8fe0dba07", "IMG-3", "a_b", "x" * 128, "007"],
)
def test_ids_are_integers_in_int64_or_short_safe_strings(value):
    assert id_problem(value) is None
    assert is_id_text(id_text(value))


@pytest.mark.parametrize(
    "value",
    [
        -1,
        INT64_MAX + 1,
        True,
        False,
        1.0,
        None,
        "",
        "x" * 129,
        "a.b",
        "../x",
        "a/b",
        "a b",
        "é",
        "5\n",
        [1],
        {"id": 1},
    ],
)
def test_anything_else_is_refused_with_what_is_allowed(value):
    assert id_problem(value) == ALLOWED
    if isinstance(value, str):
        assert not is_id_text(value)


def test_an_integer_id_is_its_plain_decimal_text():
    assert id_text(5) == "5" and id_text("05") == "05"  # a string keeps its zeros


def test_plain_integers_sort_numerically_first_then_the_rest_by_code_point():
    ids = ["b", "10", "9", "A", "010", "a", 2, "-1", str(INT64_MAX), str(INT64_MAX + 1)]
    assert sorted_ids(ids) == [
        "2",
        "9",
        "10",
        str(INT64_MAX),  # then code points: "-" < "0"
        "-1",
        "010",
        str(INT64_MAX + 1),
        "A",
        "a",
        "b",
    ]
    assert id_order(7) == id_order("7")  # an id and its text are one id


def test_ranks_follow_the_order_and_equal_ids_share_one():
    ranks = id_ranks(["10", 9, "b", "9", "a"])
    assert ranks.dtype == np.int64 and ranks.tolist() == [1, 0, 3, 0, 2]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, INT64_MAX), st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True))
    )
)
def test_the_order_is_total_and_agrees_with_the_ranks(ids):
    ordered = sorted_ids(ids)
    assert sorted_ids(reversed(ordered)) == ordered  # the same whatever the input order
    ranks = id_ranks(ids)
    by_rank = [text for _, text in sorted(zip(ranks.tolist(), map(str, ids), strict=True))]
    assert by_rank == ordered


def test_repeated_stem_names_the_second_file_and_the_first():
    paths = [Path("train/1/7.jpg"), Path("train/2/8.png"), Path("train/3/7.png")]
    assert repeated_stem(paths) == (Path("train/3/7.png"), Path("train/1/7.jpg"))
    assert repeated_stem(paths[:2]) is None
