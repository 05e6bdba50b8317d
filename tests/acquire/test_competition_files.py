import pytest

from lib.acquire.competition_files import (
    check_class_ids,
    competition_files,
    resolve_file,
    write_classes_file,
)
from lib.common.errors import UserError


def test_auto_takes_the_competition_folders_file_when_there(tmp_path):
    (tmp_path / "classes.csv").write_text("label_id,name\n1,a\n")
    files = competition_files(
        tmp_path, classes_file="auto", test_labels="auto", sample_submission="auto"
    )
    assert files.classes_file == tmp_path / "classes.csv"
    assert files.test_labels is None and files.sample_submission is None


def test_null_and_paths_are_taken_as_given(tmp_path):
    assert resolve_file(None, key="test_labels", competition=tmp_path) is None
    assert resolve_file("x/y.csv", key="test_labels", competition=tmp_path).as_posix() == "x/y.csv"


def test_class_ids_must_be_the_competitions_labels(tmp_path):
    check_class_ids({1: "a", 2: "b"}, [2, 1, 1], source=tmp_path / "c.csv")
    with pytest.raises(UserError, match=r"c.csv: .*: 1 \(3\) without a name, 0 not in the "):
        check_class_ids({1: "a", 2: "b"}, [1, 2, 3], source=tmp_path / "c.csv")


def test_auto_falls_back_to_the_classes_file_the_download_derived(tmp_path):
    derived = tmp_path / "data" / "classes.csv"
    competition = tmp_path / "dogs"
    competition.mkdir()
    values = dict(classes_file="auto", test_labels="auto", sample_submission="auto")
    assert competition_files(competition, derived_classes=derived, **values).classes_file is None
    write_classes_file(derived, {3, 1, 2}, {1: "affenpinscher", 2: "basenji, wire"})
    assert derived.read_text() == 'label_id,name\n1,affenpinscher\n2,"basenji, wire"\n3,3\n'
    assert competition_files(competition, derived_classes=derived, **values).classes_file == derived
    # the competition's own file comes first
    (competition / "classes.csv").write_text("label_id,name\n1,a\n")
    assert (
        competition_files(competition, derived_classes=derived, **values).classes_file
        == competition / "classes.csv"
    )
