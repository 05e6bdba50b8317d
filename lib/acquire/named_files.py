"""Read a competition whose file names carry the labels (`competition_format: named_files`):
Oxford-IIIT Pets as fastai's pet-breeds chapter reads it.

In: the competition folder (``images/<label>_<n>.<ext>``, e.g. ``great_pyrenees_173.jpg``;
optionally ``test/<id>.<ext>``), the regular expression ``label_pattern`` (searched in each file
name, as fastai's RegexLabeller does; its group named ``label``, else its first group, is the
label) and ``test_share``.
Out: a ``lib.acquire.layouts.Competition``: the images of ``images/`` labelled by their names
(labels are names: ids 1..N in sorted order) and, as the test split, the images of ``test/``;
without a ``test/`` folder, ``test_share`` of each label's images (at least one left to train
on) is held out as the test split, its labels kept as ``test_answers`` so the run scores its
own submission. Which images are held out follows a hash of each file name: the same on every
machine and run, and a file added to a label moves no other file out of that label's split
except at the share's boundary.
A file the pattern does not match, or whose label group is empty, is a CompetitionError naming
the first such file (a wrong pattern must not leave images silently unlabelled).
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

from lib.acquire.layouts import Competition, _images_in, _records, label_ids
from lib.acquire.records import CompetitionError

IMAGES = "images"


def read_named_files(folder: Path, *, label_pattern: str | None, test_share: float) -> Competition:
    folder = Path(folder)
    if not label_pattern:
        raise CompetitionError(
            f"{folder}: the named_files layout needs label_pattern, a "
            "regular expression with a group capturing the label"
        )
    if not (folder / IMAGES).is_dir():
        raise CompetitionError(
            f"{folder / IMAGES}: not found; the named_files layout reads images/<label>_<n>.<ext>"
        )
    images = _images_in(folder / IMAGES)
    if not images:
        raise CompetitionError(f"{folder / IMAGES}: no images in it")
    labelled = [(path, label_of_name(path, label_pattern)) for path in images]
    names, label_of = label_ids(label for _, label in labelled)
    records = {}
    answers = None
    if (folder / "test").is_dir():
        train = labelled
        records["test"] = _records("test", folder, [(p, None) for p in _images_in(folder / "test")])
    else:
        train, held = hold_out(labelled, share=test_share)
        records["test"] = _records("test", folder, [(p, None) for p, _ in held])
        answers = {path.stem: label_of[label] for path, label in held}
    records["train"] = _records("train", folder, [(p, label_of[n]) for p, n in train])
    return Competition(folder, "named_files", records, names, test_answers=answers)


def label_of_name(path: Path, pattern: str) -> str:
    """The label `pattern` finds in the file name of `path` (group `label`, else group 1)."""
    found = re.search(pattern, path.name)
    if found is None:
        raise CompetitionError(
            f"{path}: label_pattern {pattern!r} does not match this file "
            "name; every image of images/ must carry its label"
        )
    group = "label" if "label" in found.re.groupindex else 1
    label = found.group(group)
    if not label:
        raise CompetitionError(
            f"{path}: label_pattern {pattern!r} finds an empty label in this file name"
        )
    return label


def hold_out(
    labelled: list[tuple[Path, str]], *, share: float
) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(kept, held out): per label, the `share` of its images first in hash order of their
    file names (rounded, at most all but one), held out."""
    by_label: dict[str, list[tuple[Path, str]]] = {}
    for item in labelled:
        by_label.setdefault(item[1], []).append(item)
    kept, held = [], []
    for label in sorted(by_label):
        items = sorted(by_label[label], key=lambda item: _hash(item[0].name))
        count = min(math.floor(share * len(items) + 0.5), len(items) - 1)
        held += items[:count]
        kept += items[count:]
    return kept, held


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()
