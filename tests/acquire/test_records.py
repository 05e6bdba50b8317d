"""lib.acquire.records: the image records every format reads into, and the label folder names."""

import pytest

from lib.acquire.records import ImageRecord, label_dir_name, label_width


@pytest.mark.parametrize(
    ("labels", "width"), [([5], 1), ([1, 9], 1), ([3, 10], 2), ([128, 7], 3), ([], 1)]
)
def test_label_width_is_the_digits_of_the_largest_label(labels: list[int], width: int):
    records = [ImageRecord("train", i, ("https://x/1",), label) for i, label in enumerate(labels)]
    records.append(ImageRecord("test", 99, ("https://x/2",), None))
    assert label_width(records) == width


def test_label_dir_names_sort_numerically():
    assert label_dir_name(5, 3) == "005"
    assert label_dir_name(128, 3) == "128"
    names = [label_dir_name(label, 3) for label in (1, 2, 10, 100, 128)]
    assert sorted(names) == names


def test_records_keep_no_per_instance_dict():
    # ~200k records for a real competition: slots keep each one small
    record = ImageRecord("train", 1, ("https://x/1.jpg",), 3)
    assert not hasattr(record, "__dict__")
