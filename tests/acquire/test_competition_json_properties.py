"""lib.acquire.competition_json, property-based: whatever a competition folder holds (random JSON
shaped like a competition or not, random bytes), reading it either works or raises the one-line
UserError; it never raises anything else and writes nothing."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.acquire.competition_json import load_competition, load_split
from lib.acquire.records import SPLITS
from lib.common.errors import UserError
from tests.conftest import assert_written_only_inside, recording_writes

FAST = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["file:a.png", "http://h/x.jpg", "../x"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Entries that are nearly right, so the checks past the first ones get exercised too.
image_entries = st.fixed_dictionaries(
    {},
    optional={
        "image_id": st.integers(-2, 2**65) | json_values,
        "url": st.sampled_from(
            ["file:a.png", "https://h/1.jpg", "ftp://h/1", "file:/etc/passwd", "http://"]
        )
        | st.lists(st.sampled_from(["file:a.png", "https://h/1.jpg", ""]), max_size=3)
        | json_values,
        "label_id": st.integers(-2, 2**65) | json_values,
    },
)
documents = (
    st.fixed_dictionaries(
        {},
        optional={
            "images": st.lists(image_entries, max_size=6) | json_values,
            "annotations": st.lists(image_entries, max_size=6) | json_values,
        },
    )
    | json_values
)


def read_all(folder: Path) -> None:
    """Every reader of lib.acquire.competition_json on `folder`; UserError is the expected
    failure."""
    for split in SPLITS:
        if (folder / f"{split}.json").is_file():
            with contextlib.suppress(UserError):
                load_split(folder / f"{split}.json", split)
    with contextlib.suppress(UserError):
        load_competition(folder)


def check_folder(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for file_name, data in files.items():
            (folder / file_name).write_bytes(data)
        with recording_writes() as writes:
            read_all(folder)
        assert_written_only_inside(folder, writes)


@FAST
@given(st.dictionaries(st.sampled_from([f"{s}.json" for s in SPLITS]), documents, min_size=1))
def test_any_json_is_read_or_refused_in_one_line(files):
    check_folder({name: json.dumps(document).encode() for name, document in files.items()})


@FAST
@given(
    st.dictionaries(
        st.sampled_from([f"{s}.json" for s in SPLITS]), st.binary(max_size=200), min_size=1
    )
)
def test_any_bytes_are_read_or_refused_in_one_line(files):
    check_folder(files)
