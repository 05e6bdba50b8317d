"""Labels from file names (Oxford-IIIT Pets): label_pattern, a test folder or a held-out share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lib.acquire.layouts import detect_format, read_competition
from lib.acquire.named_files import hold_out
from lib.acquire.records import CompetitionError
from tests.conftest import write_image

BREEDS = ["Abyssinian", "great_pyrenees", "yorkshire_terrier"]  # cats are capitalised
PATTERN = r"^(.+)_\d+\.\w+$"

Writer = Callable[[Path, int, int], None]  # (path, class index, image index)


def random_image(path: Path, label: int, index: int) -> None:
    write_image(path, size=(16, 16), seed=label * 100 + index)


def make_pets(
    folder: Path, *, per_breed: int = 5, test: int = 0, image: Writer = random_image
) -> None:
    for b, breed in enumerate(BREEDS):
        for i in range(1, per_breed + 1):
            image(folder / "images" / f"{breed}_{i}.jpg", b, i)
    for i in range(test):
        image(folder / "test" / f"pet{i}.jpg", i % len(BREEDS), 500 + i)


def test_labels_come_from_the_file_names_and_a_share_is_held_out_as_test(tmp_path):
    make_pets(tmp_path, per_breed=5)
    assert detect_format(tmp_path) == "named_files"
    competition = read_competition(tmp_path, label_pattern=PATTERN, test_share=0.2)
    assert competition.class_names == dict(enumerate(sorted(BREEDS), start=1))
    train, test = competition.records["train"], competition.records["test"]
    assert len(train) == 12 and len(test) == 3  # one of each breed's five
    answers = competition.test_answers
    assert sorted(answers) == competition.test_ids
    for image_id, label in answers.items():
        assert image_id.rsplit("_", 1)[0] == competition.class_names[label]
    again = read_competition(tmp_path, label_pattern=PATTERN, test_share=0.2)
    assert again.test_answers == answers  # the same images every time


def test_a_test_folder_is_the_test_split(tmp_path):
    make_pets(tmp_path, per_breed=2, test=2)
    competition = read_competition(
        tmp_path, fmt="named_files", label_pattern=PATTERN, test_share=0.2
    )
    assert len(competition.records["train"]) == 6 and competition.test_answers is None
    assert competition.test_ids == ["pet0", "pet1"]


def test_a_named_group_is_the_label(tmp_path):
    make_pets(tmp_path, per_breed=2, test=1)
    competition = read_competition(
        tmp_path, label_pattern=r"(?P<n>\d+)|(?P<label>[a-z]+)", test_share=0.2
    )
    # searched as fastai's RegexLabeller does: the first match in the name, group `label`
    assert sorted(competition.class_names.values()) == ["byssinian", "great", "yorkshire"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        # Abyssinian_1.jpg matches; great_pyrenees_1.jpg is the first file it does not
        (
            r"^([A-Za-z]+)_\d+\.jpg$",
            r"images/great_pyrenees_1.jpg: label_pattern .* does not "
            "match this file name",
        ),
        (
            r"^([a-z]*)[A-Za-z_]*_\d+\.jpg$",
            r"images/Abyssinian_1.jpg: label_pattern .* finds an "
            "empty label",
        ),
    ],
)
def test_a_pattern_that_fails_on_a_file_names_the_first_such_file(tmp_path, pattern, message):
    make_pets(tmp_path, per_breed=1)
    with pytest.raises(CompetitionError, match=message):
        read_competition(tmp_path, label_pattern=pattern, test_share=0.2)


def test_the_held_out_share_keeps_one_image_of_each_label_to_train_on():
    items = [(Path(f"{b}_{i}.jpg"), b) for b in "ab" for i in range(3)] + [(Path("c_1.jpg"), "c")]
    kept, held = hold_out(items, share=0.5)
    assert sorted(label for _, label in held) == ["a", "a", "b", "b"]
    assert [label for _, label in kept].count("c") == 1
    assert hold_out(list(reversed(items)), share=0.5)[1] == held  # order of listing is no matter
