"""Which submission shape a competition wants, checked before any work: the `submission_format`
against the `metric` and against Kaggle's sample submission.

In: submission_format (`label`, `proba`, `topk`), metric, and the path of the sample submission
(or None). Out: k, the labels per row of a `topk` submission (k of metric map@k, else 1); a
UserError naming the file or key when they disagree, e.g. a `label` format for a sample whose
rows hold five space-separated labels, or a `proba` format for a two-column sample. Imported
by the download stage, the first that runs, so a contradiction stops `dvc repro` before any
image is fetched or model trained; the ensemble checks again when it writes.

Ids as a sample spells them: an image id, or an image id with the file's extension
(`2216849948.jpg`, Cassava; `0021e90e4.png`, Plant Seedlings), which names the test image of
that stem (`id_of_spelling`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from lib.common.csvfile import read_rows
from lib.common.errors import UserError
from lib.common.ids import is_id_text
from lib.common.images import IMAGE_SUFFIXES

FORMATS = ("label", "proba", "topk")
_MAP = re.compile(r"map@([1-5])")


def top_k(submission_format: str, metric: str) -> int:
    """Labels per row: k of map@k for `topk`, 1 otherwise. The params' rules refuse `topk`
    with another metric (lib.common.params)."""
    found = _MAP.fullmatch(metric)
    if submission_format == "topk":
        if found is None:
            raise UserError(
                f"submission_format topk writes the k best labels of metric "
                f"map@k; metric is {metric}: set metric map@1..map@5"
            )
        return int(found.group(1))
    return 1


def id_of_spelling(text: str) -> str | None:
    """The image id `text` names: itself when it is an id, its stem when it is an id with an
    image file extension; None otherwise."""
    if is_id_text(text):
        return text
    stem, dot, suffix = text.rpartition(".")
    if dot and is_id_text(stem) and f".{suffix.lower()}" in IMAGE_SUFFIXES:
        return stem
    return None


def check_sample_shape(
    sample: Path | None, *, submission_format: str, metric: str, labels: Collection[str] = ()
) -> None:
    """A UserError naming `sample` when its columns or cells are of another shape than
    `submission_format` writes (checked on the header and the first rows). `labels`: the
    competition's label texts, so that a name with a space (`Common Chickweed`) counts as one
    label, not two. A topk submission of labels with spaces is refused too: Kaggle splits its
    cells at spaces."""
    k = top_k(submission_format, metric)
    spaced = sorted(label for label in labels if " " in label)
    if submission_format == "topk" and spaced:
        raise UserError(
            f"submission_format topk separates labels by spaces, and the label "
            f"{spaced[0]!r} has one: Kaggle could not read it; use "
            "submission_format label"
        )
    if sample is None:
        return
    rows = [row for row in read_rows(sample, what="sample submission", bom=True) if row]
    header, body = (rows[0] if rows else []), rows[1:6]
    if len(header) < 2:
        raise UserError(f"{sample}: a sample submission needs a header of at least 2 columns")
    if submission_format == "proba":
        if len(header) == 2:
            raise UserError(
                f"{sample}: header {','.join(header)} has one value column; "
                "submission_format proba writes one column per class (at least "
                "2): is submission_format label or topk?"
            )
        return
    if len(header) != 2:
        raise UserError(
            f"{sample}: header {','.join(header[:4])},... has {len(header)} columns;"
            f" submission_format {submission_format} writes 2 (id and "
            f"{'the k best labels' if k > 1 else 'the label'}): is "
            "submission_format proba?"
        )
    most = max(
        (1 if row[1] in labels else len(row[1].split()) for row in body if len(row) > 1), default=1
    )
    if submission_format == "label" and most > 1:
        raise UserError(
            f"{sample}: its {header[1]} cells hold {most} space-separated labels; "
            "submission_format label writes one: is submission_format topk (with "
            f"metric map@{most})?"
        )
    if submission_format == "topk" and most > 1 and most != k:
        raise UserError(
            f"{sample}: its {header[1]} cells hold {most} space-separated labels; "
            f"metric {metric} makes submission_format topk write {k}: is the metric "
            f"map@{most}?"
        )
