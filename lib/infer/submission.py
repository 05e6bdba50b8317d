"""Submission CSVs in the competition's format, and the checks Kaggle would apply to them.

In: the competition (lib.acquire.layouts: its test ids and label ids), the names of the labels
from a classes file when there is one, optionally Kaggle's sample submission, and the ensembled test
probabilities. Out: a `SubmissionLayout` (header, ids in row order, the label of each column:
what the submission CSV looks like, not the competition folder's shape, which is
lib.acquire.layouts'), the submission written atomically after passing `check_submission`, and
for any CSV the list of everything Kaggle would reject.

Formats:
- label (iMaterialist, Cassava, Plant Seedlings): `id,predicted`, one label per test id: the
  label id, or the class name when the competition's labels are names (`file,species`);
- proba (Dog Breed Identification): `id,<class 1>,...,<class N>`, a probability per class, rows
  summing to 1; columns are the class names from the classes file (label ids without one);
- topk (Humpback Whale, MAP@k): `id,predicted` with the k most probable labels (ids or names as
  for label), best first, space-separated in one cell.
Every test id gets a row: images that could not be downloaded get the fallback (the most
probable class under the prior, or the prior itself as probabilities), and are counted.
A sample submission fixes the ids, the columns and the row order exactly; its ids may carry the
image's extension (`2216849948.jpg`), which then names the test image of that stem
(lib.infer.shapes.id_of_spelling) and is written as the sample spells it.
Kaggle matches ids as text: an id is written exactly as the competition spells it
(`000bec180eb18c7604dcecc8fe0dba07`; `5001`, not `05001`, ` 5001` or `5001.0`); ids are text
throughout (lib.common.ids).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.acquire.competition_files import check_class_ids
from lib.acquire.layouts import Competition
from lib.common.csvfile import int_field, plain_int, read_columns, read_rows
from lib.common.errors import UserError
from lib.common.fileio import atomic_path
from lib.common.ids import ALLOWED as ALLOWED_IDS
from lib.common.ids import id_order
from lib.infer.metrics import top_k_columns
from lib.infer.predictions import Predictions
from lib.infer.shapes import FORMATS, id_of_spelling

SUM_TOLERANCE = 1e-3  # how far a proba row may sum from 1 (6 significant digits per value)


@dataclass
class SubmissionLayout:
    """What a submission must look like: `labels` are the label ids of the probability columns
    (proba, in header order) or the allowed predicted labels (label, topk)."""

    fmt: str
    header: list[str]
    ids: list[str]  # as written: the sample's spelling
    labels: list[int]
    keys: list[str] | None = None  # the test id of each row, when `ids` spell it otherwise
    label_text: dict[int, str] | None = None  # label, topk: the name written for each label
    k: int = 1  # topk: labels per row

    @property
    def test_ids(self) -> list[str]:
        """The test image id of each row."""
        return self.keys if self.keys is not None else self.ids

    def written(self, label: int) -> str:
        """A label as label and topk submissions write it: its name, or its id."""
        return self.label_text[label] if self.label_text else str(label)


def class_names(classes, names: dict[int, str] | None) -> list[str]:
    """Each label's name from the classes file, or the label id itself as text."""
    return [(names or {}).get(int(label), str(int(label))) for label in classes]


def read_class_names(path: Path) -> dict[int, str]:
    """label_id -> name from a `label_id,name` CSV (the demo's classes.csv)."""
    records = read_columns(path, what="classes file", columns=("label_id", "name"))
    names = {
        int_field(row["label_id"], path=path, line=line, column="label_id"): row["name"]
        for line, row in records
    }
    duplicated = [name for name, n in Counter(names.values()).items() if n > 1]
    if duplicated:
        raise UserError(f"{path}: class names must be distinct, {duplicated[:3]} repeat")
    return names


def competition_class_names(
    classes_file: Path | None, competition: Competition
) -> dict[int, str] | None:
    """The names of a classes file, checked to cover exactly the competition's labels; None
    without a file."""
    if classes_file is None:
        return None
    names = read_class_names(classes_file)
    check_class_ids(names, competition.labels, source=classes_file)
    return names


def _examples(values: Sequence, n: int = 5) -> str:
    shown = ", ".join(str(v) for v in list(values)[:n])
    return shown + (", ..." if len(values) > n else "")


def read_sample(path: Path) -> tuple[list[str], list[str]]:
    """The header and the ids (in row order, as spelt) of a sample submission."""
    path = Path(path)
    rows = read_rows(path, what="sample submission", bom=True)
    header = rows[0] if rows else None
    if not header or len(header) < 2:
        raise UserError(f"{path}: a sample submission needs a header of at least 2 columns")
    # Kept as spelt: Kaggle matches them as text, so `05001` is not test.json's 5001.
    ids = []
    for line, row in enumerate(rows[1:], start=2):
        if row and id_of_spelling(row[0]) is None:
            raise UserError(
                f"{path}: line {line}: {header[0]} {row[0][:40]!r} is not allowed: "
                f"expected an image id ({ALLOWED_IDS}), or one with its file's "
                "extension"
            )
        if row:
            ids.append(row[0])
    return header, ids


def competition_layout(
    fmt: str,
    competition: Competition,
    *,
    names: dict[int, str] | None,
    sample: Path | None,
    extra_labels: Sequence[int] = (),
    k: int = 1,
) -> SubmissionLayout:
    """The submission Kaggle expects for a competition, the same for the ensemble that writes
    it and for the check before an upload: the test ids; as classes, those of the classes file
    (`names`, from `competition_class_names`), else every label of the labelled splits, plus
    `extra_labels` (the model's classes); `sample` as in `make_layout`.

    Every label of the competition, not only those of the images that downloaded: a class
    whose every image failed still needs its proba column. Label and topk submissions of a
    competition whose labels are names write the names (its label ids 1..N are ours, not the
    competition's); `k`: labels per topk row."""
    labels = set(names or {}) | {int(label) for label in extra_labels}
    if names is None:
        labels |= competition.labels
    layout = make_layout(
        fmt, test_ids=competition.test_ids, labels=sorted(labels), names=names, sample=sample, k=k
    )
    if fmt != "proba" and competition.class_names is not None:
        unnamed = sorted(set(layout.labels) - competition.class_names.keys())
        if unnamed:
            raise UserError(
                f"{competition.folder}: label ids {unnamed[:5]} have no name among "
                "the competition's labels; is classes_file for another "
                "competition?"
            )
        spaced = [name for name in competition.class_names.values() if " " in name]
        if fmt == "topk" and spaced:
            raise UserError(
                f"{competition.folder}: class name {spaced[0]!r} has a space, and a "
                "topk submission separates its labels by spaces: Kaggle could not "
                "read it; use submission_format label"
            )
        layout.label_text = dict(competition.class_names)
    return layout


def make_layout(
    fmt: str,
    *,
    test_ids: Sequence[int | str],
    labels: Sequence[int],
    names: dict[int, str] | None = None,
    sample: Path | None = None,
    k: int = 1,
) -> SubmissionLayout:
    """The expected submission. `labels`: the competition's label ids; `names`: their names
    (proba columns); `k`: labels per row of a topk submission. With a sample, its ids (as it
    spells them), header and row order are taken, after checking that they name the same test
    images as ours; a mismatch is a UserError naming what differs."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    labels = sorted(int(label) for label in labels)
    column_of = dict(zip(class_names(labels, names), labels, strict=True))
    header = ["id", *column_of] if fmt == "proba" else ["id", "predicted"]
    ids = [str(i) for i in test_ids]
    k = min(k, len(labels)) if fmt == "topk" else 1
    if sample is None:
        return SubmissionLayout(
            fmt, header, ids, list(column_of.values()) if fmt == "proba" else labels, k=k
        )
    sample_header, sample_ids = read_sample(sample)
    known = set(ids)
    keys = [i if i in known else (id_of_spelling(i) or i) for i in sample_ids]
    repeated = [i for i, n in Counter(keys).items() if n > 1]
    extra, missing = sorted(set(keys) - known), sorted(known - set(keys))
    if repeated or extra or missing:
        raise UserError(
            f"{sample}: the sample submission's ids do not match the test images: "
            f"{len(extra)} not among them ({_examples(extra)}), {len(missing)} test images "
            f"missing ({_examples(missing)}), {len(repeated)} repeated ({_examples(repeated)})"
        )
    keys_or_none = keys if keys != sample_ids else None
    if fmt != "proba":
        if len(sample_header) != 2:
            raise UserError(
                f"{sample}: header {sample_header} has {len(sample_header)} "
                f"columns; the {fmt} format writes 2 (id and the predicted "
                "labels): is submission_format proba?"
            )
        return SubmissionLayout(fmt, sample_header, sample_ids, labels, keys=keys_or_none, k=k)
    unknown = [c for c in sample_header[1:] if c not in column_of]
    absent = [c for c in column_of if c not in sample_header[1:]]
    if unknown or absent:
        raise UserError(
            f"{sample}: the sample submission's columns do not match the classes: "
            f"{len(unknown)} unknown ({_examples(unknown)}), {len(absent)} classes "
            f"without a column ({_examples(absent)}); check classes_file"
        )
    return SubmissionLayout(
        fmt, sample_header, sample_ids, [column_of[c] for c in sample_header[1:]], keys=keys_or_none
    )


def build_submission(
    layout: SubmissionLayout, test: Predictions, *, fallback_probs: np.ndarray, fallback_column: int
) -> tuple[pd.DataFrame, int]:
    """The submission rows in the layout's order; ids without a prediction get the fallback
    (probabilities for proba, the label of `fallback_column` first for label and topk, then
    the fallback's most probable). Returns the frame and how many rows were filled."""
    row_of = {str(i): r for r, i in enumerate(test.image_ids)}
    rows = np.array([row_of.get(i, -1) for i in layout.test_ids], dtype=np.int64)
    filled = int((rows < 0).sum())
    probs = np.where(
        (rows >= 0)[:, None],
        test.probs[np.maximum(rows, 0)].astype(np.float64),
        np.asarray(fallback_probs, np.float64)[None, :],
    )
    if layout.fmt != "proba":
        fallback = np.asarray(fallback_probs, np.float64).copy()
        fallback[fallback_column] = np.inf  # first, whatever ties the prior has
        probs[rows < 0] = fallback
        best = top_k_columns(probs, layout.k)
        cells = [" ".join(layout.written(int(test.classes[c])) for c in row) for row in best]
        return pd.DataFrame({layout.header[0]: layout.ids, layout.header[1]: cells}), filled
    column = {int(label): i for i, label in enumerate(test.classes)}
    # A class the models never saw (absent from training) gets 0 before renormalising.
    out = np.stack(
        [
            probs[:, column[label]] if label in column else np.zeros(len(probs))
            for label in layout.labels
        ],
        axis=1,
    )
    out = out / out.sum(axis=1, keepdims=True)
    frame = pd.DataFrame(out, columns=layout.header[1:])
    frame.insert(0, layout.header[0], layout.ids)
    return frame, filled


def write_submission(path: Path, frame: pd.DataFrame, layout: SubmissionLayout) -> None:
    """Write atomically, only if `check_submission` finds nothing Kaggle would reject."""
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
        problems = check_submission(tmp, layout)
        if problems:
            raise UserError(f"{path}: the submission would be rejected: {'; '.join(problems)}")


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_submission(path: Path, layout: SubmissionLayout) -> list[str]:
    """Everything Kaggle would reject in the CSV at `path`, one line each (empty: fine). A
    file that is not a UTF-8 CSV at all is a UserError."""
    table = read_rows(path, what="submission")
    if not table:
        return ["the file is empty"]
    header = table[0]
    rows = [(line, row) for line, row in enumerate(table[1:], start=2) if row]
    problems = []
    if layout.fmt != "proba" or header[:1] != layout.header[:1]:
        if header != layout.header:
            problems.append(
                f"header is {_examples(header, 4)}; expected {_examples(layout.header, 4)}"
            )
    else:
        unknown = [c for c in header[1:] if c not in layout.header[1:]]
        absent = [c for c in layout.header[1:] if c not in header[1:]]
        repeated = [c for c, n in Counter(header).items() if n > 1]
        for what, names in (
            ("unknown columns", unknown),
            ("missing class columns", absent),
            ("repeated columns", repeated),
        ):
            if names:
                problems.append(f"{len(names)} {what}: {_examples(names)}")
    ragged = [line for line, row in rows if len(row) != len(header)]
    problems += _found(f"rows without {len(header)} fields", ragged, lines=True)
    ids: list[str] = []
    bad_ids = []
    for line, row in rows:
        if id_of_spelling(row[0]) is not None:
            ids.append(row[0])
        else:
            bad_ids.append(f"line {line}: {row[0][:20]!r}")
    problems += _found(
        "malformed ids (an id is letters, digits, - and _, optionally with the "
        "image's extension; Kaggle matches ids as text)",
        bad_ids,
        shown=3,
    )
    repeated_ids = sorted((i for i, n in Counter(ids).items() if n > 1), key=id_order)
    expected = set(layout.ids)
    unknown_ids = sorted(set(ids) - expected, key=id_order)
    present = set(ids)
    missing_ids = [i for i in layout.ids if i not in present]
    for what, values in (
        ("missing ids", missing_ids),
        ("duplicate ids", repeated_ids),
        ("ids not in the test set", unknown_ids),
    ):
        if values:
            problems.append(f"{len(values)} {what}: {_examples(values)}")
    good = [(line, row) for line, row in rows if len(row) == len(header)]
    if len(header) < 2:
        return problems  # no value column: the header's problem says it all
    if layout.fmt == "label" and not layout.label_text:
        problems += _check_labels(good, set(layout.labels))
    elif layout.fmt == "proba":
        problems += _check_probabilities(good)
    else:
        problems += _check_label_lists(good, layout)
    return problems


def _check_label_lists(rows: list[tuple[int, list[str]]], layout: SubmissionLayout) -> list[str]:
    """A label name per cell (label: a name may hold spaces) or space-separated lists of 1..k
    distinct labels (topk)."""
    allowed = {layout.written(label) for label in layout.labels}
    empty, unknown, too_many, repeated = [], [], [], []
    for line, row in rows:
        labels = row[1].split(" ") if layout.fmt == "topk" else [row[1]]
        if not row[1] or "" in labels:
            empty.append(f"line {line}: {row[1][:20]!r}")
            continue
        unknown += [f"line {line}: {label[:20]!r}" for label in labels if label not in allowed]
        if len(labels) > layout.k:
            too_many.append(f"line {line}: {len(labels)}")
        if len(set(labels)) < len(labels):
            repeated.append(line)
    return [
        *_found("rows with no label, or labels not separated by one space", empty, shown=3),
        *_found(f"unknown labels (allowed: {_examples(sorted(allowed), 3)})", unknown, shown=3),
        *_found(f"rows with more than {layout.k} labels", too_many, shown=3),
        *_found("rows naming a label twice", repeated, lines=True),
    ]


def _check_labels(rows: list[tuple[int, list[str]]], allowed: set[int]) -> list[str]:
    not_int, unknown = [], []
    for line, row in rows:
        value = row[1].strip()
        label = plain_int(value)
        if label is None:
            not_int.append(f"line {line}: {value[:20]!r}")
        elif label not in allowed:
            unknown.append(f"line {line}: {value}")
    problems = _found("labels missing, NaN or not integers", not_int, shown=3)
    if unknown:
        problems.append(
            f"{len(unknown)} unknown labels ({_examples(unknown, 3)}; allowed: "
            f"{min(allowed)}..{max(allowed)})"
            if allowed
            else "no labels allowed"
        )
    return problems


def _check_probabilities(rows: list[tuple[int, list[str]]]) -> list[str]:
    not_numbers, out_of_range, bad_sums = [], [], []
    for line, row in rows:
        values = [_float(text) for text in row[1:]]
        if any(v is None for v in values):
            not_numbers.append(line)
        elif any(v < 0 or v > 1 for v in values):
            out_of_range.append(line)
        elif abs(sum(values) - 1) > SUM_TOLERANCE:
            bad_sums.append(f"line {line}: {sum(values):.4f}")
    return [
        *_found("rows with a missing, NaN or non-numeric probability", not_numbers, lines=True),
        *_found("rows with a probability outside [0, 1]", out_of_range, lines=True),
        *_found(f"rows not summing to 1 (+-{SUM_TOLERANCE})", bad_sums, shown=3),
    ]


def _found(what: str, items: list, *, lines: bool = False, shown: int = 5) -> list[str]:
    """``["<count> <what> (<first items>)"]``, or nothing when there are none; ``lines``: the
    items are line numbers."""
    if not items:
        return []
    return [f"{len(items)} {what} ({'lines ' if lines else ''}{_examples(items, shown)})"]
