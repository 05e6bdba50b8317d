"""What every competition format is read into, and what the download names from it.

In: nothing (the readers: lib.acquire.competition_json, lib.acquire.layouts and its formats).
Out: the split names (SPLITS, LABELLED_SPLITS), ImageRecord (one image of one split: its id,
its URLs and, for labelled splits, its label id), CompetitionError (a competition's file or
folder is missing or malformed: one line naming it) and the zero-padded label folder names of
data/images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lib.common.errors import UserError

SPLITS = ("train", "validation", "test")
LABELLED_SPLITS = ("train", "validation")


class CompetitionError(UserError, ValueError):
    """A competition file is missing or malformed; the message names file, key, value, rule."""


@dataclass(frozen=True, slots=True)  # slots: ~200k of them for a real competition
class ImageRecord:
    """One image of one split: where to fetch it and, for labelled splits, its class."""

    split: str
    image_id: int | str  # as the file gives it; its text (str()) is what later stages carry
    urls: tuple[str, ...]
    label: int | None  # None for the test split


def label_width(records: Iterable[ImageRecord]) -> int:
    """Digits of the largest label, so zero-padded folder names sort in numeric order."""
    labels = [record.label for record in records if record.label is not None]
    return len(str(max(labels))) if labels else 1


def label_dir_name(label: int, width: int) -> str:
    """Folder name of a label: ``(5, 3) -> "005"``, so ImageFolder's string sort is numeric."""
    return f"{label:0{width}d}"
