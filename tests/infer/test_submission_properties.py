"""lib.infer.submission (and the other readers of a user's CSV), property-based: whatever a CSV
holds (random cells under a plausible header, random text, random bytes), checking it returns a
list of problems, and reading a classes file, a sample submission or a target prior returns or
raises the one-line UserError; nothing else escapes and nothing is written."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.common.errors import UserError
from lib.infer.prior import read_target_prior
from lib.infer.submission import check_submission, make_layout, read_class_names
from tests.conftest import assert_written_only_inside, recording_writes

FAST = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
CLASSES = [11, 12, 13]
NAMES = {11: "cat", 12: "dog", 13: "fox"}
LABEL = make_layout("label", test_ids=[1, 2, 3, 5001], labels=CLASSES)
PROBA = make_layout("proba", test_ids=[1, 2, 3, 5001], labels=CLASSES, names=NAMES)

cells = (
    st.sampled_from(
        [
            "1",
            "2",
            "5001",
            "05001",
            " 3",
            "11",
            "0.5",
            "nan",
            "-1",
            "1e999",
            "",
            '"',
            "²",
            "9" * 30,
            "cat",
        ]
    )
    | st.text(max_size=8)
    | st.integers().map(str)
    | st.floats().map(str)
)
headers = st.sampled_from(
    [
        ["id", "predicted"],
        ["id", "cat", "dog", "fox"],
        ["label_id", "name"],
        ["label_id", "prior"],
        ["id", "cat", "cat"],
    ]
)


@st.composite
def csv_texts(draw) -> bytes:
    """A CSV under a plausible header, its rows of random cells and lengths."""
    header = draw(headers)
    rows = draw(
        st.lists(st.lists(cells, min_size=len(header) - 1, max_size=len(header) + 1), max_size=6)
    )
    lines = [",".join(row) for row in [header, *rows]]
    return ("\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))).encode(
        "utf-8", "surrogatepass"
    )


def read_every_way(path: Path) -> None:
    """Every reader of a user's CSV on `path`: the checks return their problems; the other
    readers return or raise UserError."""
    for layout in (LABEL, PROBA):
        with contextlib.suppress(UserError):
            assert all(isinstance(problem, str) for problem in check_submission(path, layout))
    readers: list[Callable[[], object]] = [
        lambda: read_class_names(path),
        lambda: make_layout("proba", test_ids=[1, 2], labels=CLASSES, names=NAMES, sample=path),
        lambda: read_target_prior(str(path), np.array(CLASSES)),
    ]
    for read in readers:
        with contextlib.suppress(UserError):
            read()


def check_csv(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "file.csv").write_bytes(data)
        with recording_writes() as writes:
            read_every_way(folder / "file.csv")
        assert_written_only_inside(folder, writes)


@FAST
@given(csv_texts())
def test_any_csv_is_checked_or_refused_in_one_line(data):
    check_csv(data)


@FAST
@given(st.text(max_size=300))
def test_any_text_is_checked_or_refused_in_one_line(text):
    check_csv(text.encode("utf-8", "surrogatepass"))


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_are_checked_or_refused_in_one_line(data):
    check_csv(data)


def test_the_write_recorder_sees_writes_renames_and_deletes(tmp_path):
    with recording_writes() as writes:
        (tmp_path / "a").write_text("x")
        (tmp_path / "a").rename(tmp_path / "b")
        (tmp_path / "b").read_text()
        (tmp_path / "b").unlink()
    assert writes == [
        str(tmp_path / "a"),
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        str(tmp_path / "b"),
    ]
