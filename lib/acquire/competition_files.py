"""The competition-specific files beside the images: class names, known test answers and
Kaggle's sample submission.

In: the competition folder, the params `classes_file`, `test_labels`, `sample_submission`, each
`auto`, null or a path, and the classes file the download stage derived (`derived_classes`).
Out: a CompetitionFiles with the path of each (None when there is none). `auto` takes the file
of the usual name from the competition folder when it is there, so pointing `competition` at
another folder switches all three; for the classes file it then takes the derived one (the
download writes it for every competition: `write_classes_file`), which names the classes of
competitions whose labels are names (lib.acquire.layouts).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.acquire.layouts import Competition, read_test_competition
from lib.common.errors import UserError
from lib.common.fileio import write_text

AUTO = "auto"
DEFAULT_NAMES = {
    "classes_file": "classes.csv",
    "test_labels": "test_labels.csv",
    "sample_submission": "sample_submission.csv",
}


@dataclass(frozen=True)
class CompetitionFiles:
    classes_file: Path | None
    test_labels: Path | None
    sample_submission: Path | None


def resolve_file(
    value: str | None, *, key: str, competition: Path, derived: Path | None = None
) -> Path | None:
    """The file a param names: `auto` -> the competition folder's file of the usual name, if
    present, else `derived` if present; null -> None; a path -> that path."""
    if value == AUTO:
        path = Path(competition) / DEFAULT_NAMES[key]
        if path.is_file():
            return path
        return derived if derived is not None and derived.is_file() else None
    return Path(value) if value else None


def competition_files(
    competition: Path, *, derived_classes: Path | None = None, **values: str | None
) -> CompetitionFiles:
    """`values`: classes_file, test_labels and sample_submission as params.yaml gives them;
    `derived_classes`: the download's classes file, what `classes_file: auto` falls back to."""
    derived = {"classes_file": derived_classes}
    return CompetitionFiles(
        **{
            key: resolve_file(
                values[key], key=key, competition=competition, derived=derived.get(key)
            )
            for key in DEFAULT_NAMES
        }
    )


def submitting_competition(
    params: Mapping[str, Any], *, derived_classes: Path | None, test_labels: bool = True
) -> tuple[Competition, CompetitionFiles]:
    """The competition a submission is for and its files, from the params `competition`,
    `competition_format`, `id_column`, `label_column`, `label_pattern`, `test_share`,
    `classes_file`, `sample_submission` and (unless `test_labels` is False: no answers are
    looked for) `test_labels`."""
    competition = read_test_competition(
        Path(params["competition"]),
        fmt=params["competition_format"],
        id_column=params["id_column"],
        label_column=params["label_column"],
        label_pattern=params["label_pattern"],
        test_share=params["test_share"],
    )
    files = competition_files(
        competition.folder,
        derived_classes=derived_classes,
        classes_file=params["classes_file"],
        test_labels=params["test_labels"] if test_labels else None,
        sample_submission=params["sample_submission"],
    )
    return competition, files


def write_classes_file(path: Path, labels: Iterable[int], names: dict[int, str] | None) -> None:
    """`label_id,name` for every label, in label order, atomically; a label without a name is
    named by its id (as the stages show unnamed classes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label_id", "name"])
    writer.writerows((label, (names or {}).get(label, str(label))) for label in sorted(labels))
    write_text(path, buffer.getvalue())


def check_class_ids(names: dict[int, str], labels: Iterable[int], *, source: Path) -> None:
    """The classes file must name exactly the competition's labels: a file left over from
    another competition would put wrong names on columns and reports."""
    labels = {int(label) for label in labels}
    unnamed, unknown = sorted(labels - names.keys()), sorted(names.keys() - labels)
    if unnamed or unknown:
        raise UserError(
            f"{source}: its label ids differ from the competition's labels: "
            f"{_listed(unnamed)} without a name, {_listed(unknown)} not in the "
            "competition; is classes_file for another competition?"
        )


def _listed(ids: list[int], shown: int = 5) -> str:
    examples = ", ".join(str(i) for i in ids[:shown]) + (", ..." if len(ids) > shown else "")
    return f"{len(ids)} ({examples})" if ids else "0"
