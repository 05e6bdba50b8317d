"""The class names a command shows beside label ids, for commands that do not read the whole
competition.

In: the competition folder and `classes_file` from params.yaml. Out: `{label id: name}` from
the classes file (the competition's, or the one the download derived), empty without one.
"""

from __future__ import annotations

from pathlib import Path

from lib.acquire.competition_files import competition_files
from lib.infer.submission import read_class_names
from stages.common import CLASSES_CSV


def class_names(competition: str | Path, classes_file: str | None) -> dict[int, str]:
    """`{label id: name}` of the competition's classes file; empty when it has none."""
    classes = competition_files(
        Path(competition),
        derived_classes=CLASSES_CSV,
        classes_file=classes_file,
        test_labels=None,
        sample_submission=None,
    ).classes_file
    return read_class_names(classes) if classes else {}
