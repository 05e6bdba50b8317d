"""lib.acquire.competition_json: reading and validating the competition JSON files."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from lib.acquire.competition_json import load_competition, load_split
from lib.acquire.records import CompetitionError, ImageRecord


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def labelled(*pairs: tuple[int, int]) -> dict[str, Any]:
    """A labelled split document: one image per (image_id, label_id), one URL each."""
    return {
        "images": [{"url": [f"https://example.com/{i}.jpg"], "image_id": i} for i, _ in pairs],
        "annotations": [{"image_id": i, "label_id": label} for i, label in pairs],
    }


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    write_json(
        tmp_path / "train.json",
        {
            "images": [
                {"url": ["https://a.example/3.jpg", "http://mirror.example/3.jpg"], "image_id": 3},
                {"url": "https://a.example/1.jpg", "image_id": 1},
                {"url": ["file:images/2.png"], "image_id": 2},
            ],
            "annotations": [
                {"image_id": 1, "label_id": 128},
                {"image_id": 3, "label_id": 5},
                {"image_id": 2, "label_id": 5},
            ],
        },
    )
    write_json(tmp_path / "validation.json", labelled((7, 2)))
    write_json(
        tmp_path / "test.json",
        {
            "images": [{"url": ["https://a.example/t0.jpg"], "image_id": 0}],
        },
    )
    return tmp_path


def test_load_competition_reads_every_split_sorted_by_image_id(competition: Path):
    splits = load_competition(competition)
    assert list(splits) == ["train", "validation", "test"]
    assert splits["train"] == [
        ImageRecord("train", 1, ("https://a.example/1.jpg",), 128),
        ImageRecord("train", 2, ("file:images/2.png",), 5),
        ImageRecord("train", 3, ("https://a.example/3.jpg", "http://mirror.example/3.jpg"), 5),
    ]
    assert splits["validation"] == [ImageRecord("validation", 7, ("https://example.com/7.jpg",), 2)]
    assert splits["test"] == [ImageRecord("test", 0, ("https://a.example/t0.jpg",), None)]


def test_missing_validation_and_test_are_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    write_json(tmp_path / "train.json", labelled((1, 1)))
    with caplog.at_level(logging.INFO, logger="lib.acquire.competition_json"):
        splits = load_competition(tmp_path)
    assert list(splits) == ["train"]
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "validation.json not found" in messages and "test.json not found" in messages


def test_missing_train_json_is_an_error(tmp_path: Path):
    write_json(tmp_path / "test.json", {"images": []})
    with pytest.raises(CompetitionError, match=r"train\.json: file not found"):
        load_competition(tmp_path)


def test_malformed_json_names_line_and_column(tmp_path: Path):
    path = tmp_path / "train.json"
    path.write_text('{"images": [\n  {"url": "https://x/1.jpg", "image_id": 1,}\n]}')
    with pytest.raises(CompetitionError, match=r"train\.json: invalid JSON at line 2, column \d+"):
        load_split(path, "train")


def test_test_split_annotations_are_optional_and_ignored(tmp_path: Path):
    path = write_json(tmp_path / "test.json", labelled((4, 9)))
    assert load_split(path, "test") == [
        ImageRecord("test", 4, ("https://example.com/4.jpg",), None)
    ]


def image(image_id: Any = 1, url: Any = "https://example.com/1.jpg") -> dict[str, Any]:
    return {"url": url, "image_id": image_id}


def annotation(image_id: Any = 1, label_id: Any = 1) -> dict[str, Any]:
    return {"image_id": image_id, "label_id": label_id}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], r"top level is list"),
        ({"annotations": []}, r"missing key 'images'"),
        ({"images": [image()]}, r"missing key 'annotations'"),
        ({"images": {}, "annotations": []}, r"images is \{\}; expected a list"),
        ({"images": ["x.jpg"], "annotations": []}, r"images\[0\] is 'x\.jpg'; expected an object"),
        # image ids become file names: anything but an int or a plain word is refused
        (
            {"images": [image("../x")], "annotations": [annotation()]},
            r"images\[0\]\.image_id is '\.\./x'; expected an integer \(0 to 2\*\*63 - 1\) or "
            r"1-128 letters, digits, - and _",
        ),
        ({"images": [image("")], "annotations": [annotation()]}, r"image_id is ''"),
        ({"images": [image("a b")], "annotations": [annotation()]}, r"image_id is 'a b'"),
        ({"images": [image("x.jpg")], "annotations": [annotation()]}, r"image_id is 'x\.jpg'"),
        ({"images": [image("a\\b")], "annotations": [annotation()]}, r"image_id is 'a\\\\b'"),
        ({"images": [image("a" * 129)], "annotations": [annotation()]}, r"image_id is 'aaa"),
        ({"images": [image(-1)], "annotations": [annotation()]}, r"image_id is -1"),
        ({"images": [image(True)], "annotations": [annotation()]}, r"image_id is True"),
        ({"images": [image(1.0)], "annotations": [annotation()]}, r"image_id is 1\.0"),
        (
            {"images": [{"url": "https://example.com/1.jpg"}], "annotations": []},
            r"images\[0\]\.image_id is missing",
        ),
        # ids and labels are int64 columns later: anything larger stops here, not in predict
        (
            {"images": [image(2**63)], "annotations": [annotation(2**63)]},
            r"images\[0\]\.image_id is 9223372036854775808; expected an integer \(0 to "
            r"2\*\*63 - 1\) or",
        ),
        (
            {"images": [image()], "annotations": [annotation(label_id=10**30)]},
            r"annotations\[0\]\.label_id is 1000000000000000000000000000000; expected a positive "
            r"integer up to 2\*\*63 - 1",
        ),
        (
            {"images": [image(1), image(2), image(1)], "annotations": [annotation()]},
            r"images\[2\]\.image_id 1 is a duplicate in train \(1 duplicate entries, 1 distinct",
        ),
        (
            {
                "images": [image(1), image(1), image(2), image(2), image(1)],
                "annotations": [annotation()],
            },
            r"images\[1\]\.image_id 1 is a duplicate in train \(3 duplicate entries, 2 distinct",
        ),
        (
            {"images": [image()], "annotations": [annotation(label_id=0)]},
            r"annotations\[0\]\.label_id is 0; expected a positive integer",
        ),
        ({"images": [image()], "annotations": [annotation(label_id="5")]}, r"label_id is '5'"),
        ({"images": [image()], "annotations": [annotation(label_id=False)]}, r"label_id is False"),
        (
            {"images": [image()], "annotations": [annotation(image_id="1.0")]},
            r"annotations\[0\]\.image_id is '1\.0'",
        ),
        # an int id and its digits as a string name one file: one image
        (
            {"images": [image(1), image("1")], "annotations": [annotation()]},
            r"images\[1\]\.image_id 1 is a duplicate",
        ),
        (
            {"images": [image(1), image(2)], "annotations": [annotation(1)]},
            r"image_id 2 has no annotation",
        ),
        (
            {"images": [image()], "annotations": [annotation(), annotation(9)]},
            r"annotations\[1\]\.image_id 9 has no image",
        ),
        (
            {"images": [image()], "annotations": [annotation(), annotation(1, 2)]},
            r"annotations\[1\]\.image_id 1 is annotated twice",
        ),
        (
            {"images": [{"image_id": 1}], "annotations": [annotation()]},
            r"images\[0\] \(image_id 1\) has no 'url' key",
        ),
        (
            {"images": [image(url="")], "annotations": [annotation()]},
            r"url of train image_id 1 is ''; expected a non-empty string or a non-empty list",
        ),
        ({"images": [image(url=[])], "annotations": [annotation()]}, r"url of .* is \[\]"),
        (
            {"images": [image(url=["https://a/1.jpg", ""])], "annotations": [annotation()]},
            r"url of .* is \['https://a/1\.jpg', ''\]",
        ),
        ({"images": [image(url=7)], "annotations": [annotation()]}, r"url of .* is 7"),
        (
            {
                "images": [image(url=["https://a/1.jpg", "ftp://a/1.jpg"])],
                "annotations": [annotation()],
            },
            r"train image_id 1: url 'ftp://a/1\.jpg' has scheme 'ftp'; allowed: file, http, https",
        ),
        (
            {"images": [image(url="/data/1.jpg")], "annotations": [annotation()]},
            r"url '/data/1\.jpg' has scheme ''",
        ),
        (
            {"images": [image(url="https:///1.jpg")], "annotations": [annotation()]},
            r"url 'https:///1\.jpg' has no host",
        ),
        # file: URLs read only inside the competition folder
        (
            {"images": [image(url="file:../secret.png")], "annotations": [annotation()]},
            r"url 'file:\.\./secret\.png' points outside the competition folder",
        ),
        (
            {"images": [image(url="file:images/../../x.png")], "annotations": [annotation()]},
            r"points outside the competition folder",
        ),
        (
            {"images": [image(url="file:///etc/passwd")], "annotations": [annotation()]},
            r"url 'file:///etc/passwd' points outside",
        ),
        (
            {"images": [image(url="file://otherhost/images/1.png")], "annotations": [annotation()]},
            r"points outside",
        ),
    ],
)
def test_invalid_split_names_file_key_and_value(tmp_path: Path, document: Any, message: str):
    path = write_json(tmp_path / "train.json", document)
    with pytest.raises(CompetitionError, match=message) as error:
        load_split(path, "train")
    assert str(error.value).startswith(str(path))
    assert "\n" not in str(error.value)


def test_validation_split_needs_annotations_too(tmp_path: Path):
    path = write_json(tmp_path / "validation.json", {"images": [image(5)], "annotations": []})
    with pytest.raises(CompetitionError, match="image_id 5 has no annotation"):
        load_split(path, "validation")


def test_errors_in_any_split_stop_load_competition(tmp_path: Path):
    write_json(tmp_path / "train.json", labelled((1, 1)))
    write_json(tmp_path / "test.json", {"images": [image("../../etc/passwd")]})
    with pytest.raises(CompetitionError, match=r"test\.json: .*'\.\./\.\./etc/passwd'"):
        load_competition(tmp_path)


def test_long_values_are_shortened_in_messages(tmp_path: Path):
    path = write_json(tmp_path / "train.json", {"images": [image("x" * 500)], "annotations": []})
    with pytest.raises(CompetitionError, match=r"'x+\.\.\.; expected") as error:
        load_split(path, "train")
    assert len(str(error.value)) < 250


def test_unknown_split_name_is_refused(tmp_path: Path):
    path = write_json(tmp_path / "extra.json", labelled((1, 1)))
    with pytest.raises(CompetitionError, match="split 'extra' is unknown"):
        load_split(path, "extra")


def test_file_urls_inside_the_competition_folder_are_accepted(tmp_path: Path):
    inside = tmp_path / "images" / "1.png"
    path = write_json(
        tmp_path / "train.json",
        {
            "images": [
                image(1, "file:images/1.png"),
                image(2, f"file://{inside}"),
                image(3, "file:./images/../images/3.png"),
                image(4, "file:images/a%20b.png"),
            ],
            "annotations": [annotation(i) for i in (1, 2, 3, 4)],
        },
    )
    assert [record.urls for record in load_split(path, "train")] == [
        ("file:images/1.png",),
        (f"file://{inside}",),
        ("file:./images/../images/3.png",),
        ("file:images/a%20b.png",),
    ]


def test_a_relative_competition_folder_works_too(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "comp").mkdir()
    write_json(
        tmp_path / "comp" / "train.json",
        {"images": [image(1, "file:images/1.png")], "annotations": [annotation(1)]},
    )
    assert len(load_competition(Path("comp"))["train"]) == 1


def test_json_that_is_not_utf8_is_named(tmp_path: Path):
    path = tmp_path / "train.json"
    path.write_bytes(b'{"images": [], "annotations": [], "x": "\xff"}')
    with pytest.raises(CompetitionError, match=r"train\.json: not UTF-8 text \(byte \d+"):
        load_split(path, "train")


def test_largest_int64_ids_and_labels_are_accepted(tmp_path: Path):
    path = write_json(tmp_path / "train.json", labelled((2**63 - 1, 2**63 - 1)))
    assert [(r.image_id, r.label) for r in load_split(path, "train")] == [(2**63 - 1, 2**63 - 1)]


@pytest.mark.parametrize("where", ["top", "images", "url"])
def test_deeply_nested_json_is_one_line_naming_the_file(tmp_path: Path, where: str):
    deep = "[" * 100_000 + "]" * 100_000
    text = {
        "top": deep,
        "images": f'{{"images": [{deep}], "annotations": []}}',
        "url": f'{{"images": [{{"image_id": 1, "url": {deep}}}], "annotations": []}}',
    }[where]
    path = tmp_path / "train.json"
    path.write_text(text)
    with pytest.raises(CompetitionError, match=r"train\.json: JSON nested too deeply") as error:
        load_split(path, "train")
    assert "\n" not in str(error.value)


def test_nesting_near_the_decoders_limit_is_one_short_line(tmp_path: Path):
    # parsed or not, depending on the stack in use; once parsed, its repr in the message must
    # not recurse past the limit either
    path = tmp_path / "train.json"
    limit = sys.getrecursionlimit()
    for depth in range(limit - 200, limit, 10):
        path.write_text(f'{{"images": [{"[" * depth}{"]" * depth}], "annotations": []}}')
        with pytest.raises(
            CompetitionError, match=r"train\.json: (images\[0\] is |JSON nest)"
        ) as error:
            load_split(path, "train")
        assert len(str(error.value)) < 250


def test_an_integer_too_long_to_parse_is_named(tmp_path: Path):
    path = tmp_path / "train.json"
    path.write_text(f'{{"images": [{{"image_id": {"9" * 5000}, "url": "https://x/1"}}]}}')
    with pytest.raises(CompetitionError, match=r"train\.json: unreadable JSON: .*digits"):
        load_split(path, "train")


def test_string_ids_are_kept_as_given_and_sorted_integers_first(tmp_path: Path):
    hex_id = "000bec180eb18c7604dcecc8fe0dba07"
    path = write_json(
        tmp_path / "train.json",
        {
            "images": [image(i) for i in ("b-2", 10, hex_id, "9", "A_1")],
            "annotations": [annotation(i) for i in ("b-2", 10, hex_id, "9", "A_1")],
        },
    )
    records = load_split(path, "train")
    assert [r.image_id for r in records] == ["9", 10, hex_id, "A_1", "b-2"]
    # annotations match images by the id's text: "10" annotates image 10
    path = write_json(
        tmp_path / "v.json", {"images": [image(10)], "annotations": [annotation("10", 3)]}
    )
    assert load_split(path, "validation")[0].label == 3
