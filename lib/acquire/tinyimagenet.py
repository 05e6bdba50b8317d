"""Read a competition in TinyImageNet's layout (`competition_format: tinyimagenet`).

In: the competition folder::

    wnids.txt                       one WordNet id (wnid) per line: the classes
    words.txt                       `<wnid>\t<words>` lines naming wnids (all of WordNet's)
    train/<wnid>/images/*.JPEG      (train/<wnid>/<wnid>_boxes.txt is not read)
    val/images/*.JPEG
    val/val_annotations.txt         `<file>\t<wnid>\t<x0>\t<y0>\t<x1>\t<y1>` per val image
    test/images/*.JPEG              (optional)

Out: a ``lib.acquire.layouts.Competition``: train and validation records labelled by wnid
(wnids are names: label ids 1..N in sorted order, ``class_names`` the wnids, what a label
submission writes), the val images as the validation split (`validation: pool` adds them to the
folds, `holdout` keeps them apart), test records, and ``display_names``: each class as
words.txt names it, for the reports. A file or line that breaks the layout is a CompetitionError
naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lib.acquire.layouts import Competition, _check_stems, _images_in, _records, label_ids
from lib.acquire.records import CompetitionError

log = logging.getLogger(__name__)

WNIDS, WORDS = "wnids.txt", "words.txt"
VAL_ANNOTATIONS = Path("val") / "val_annotations.txt"


def read_tinyimagenet(folder: Path) -> Competition:
    folder = Path(folder)
    wnids = _wnids(folder / WNIDS)
    names, label_of = label_ids(wnids)
    train = _train(folder, set(wnids))
    _check_stems([path for path, _ in train])  # one id per image across the wnid folders
    records = {"train": _records("train", folder, [(p, label_of[w]) for p, w in train])}
    if (folder / VAL_ANNOTATIONS).is_file():
        val = _val(folder, set(wnids))
        records["validation"] = _records("validation", folder, [(p, label_of[w]) for p, w in val])
    if (folder / "test" / "images").is_dir():
        records["test"] = _records(
            "test", folder, [(p, None) for p in _images_in(folder / "test" / "images")]
        )
    words = _words(folder / WORDS, set(wnids))
    display = {
        label: f"{words[wnid]} ({wnid})" if wnid in words else wnid
        for label, wnid in (names or {}).items()
    }
    return Competition(folder, "tinyimagenet", records, names, display_names=display)


def _wnids(path: Path) -> list[str]:
    if not path.is_file():
        raise CompetitionError(
            f"{path}: file not found; the tinyimagenet layout lists its "
            "classes there, one wnid per line"
        )
    wnids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not wnids:
        raise CompetitionError(f"{path}: no wnids in it")
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    if repeated:
        raise CompetitionError(f"{path}: wnid {repeated[0]} is listed twice")
    return wnids


def _train(folder: Path, wnids: set[str]) -> list[tuple[Path, str]]:
    train = folder / "train"
    if not train.is_dir():
        raise CompetitionError(f"{train}: not found; expected train/<wnid>/images/*.JPEG")
    images = []
    for wnid_dir in sorted(p for p in train.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if wnid_dir.name not in wnids:
            raise CompetitionError(f"{wnid_dir}: {wnid_dir.name} is not in {folder / WNIDS}")
        if not (wnid_dir / "images").is_dir():
            raise CompetitionError(
                f"{wnid_dir}: no images/ folder; expected train/{wnid_dir.name}/images/*.JPEG"
            )
        images += [(path, wnid_dir.name) for path in _images_in(wnid_dir / "images")]
    if not images:
        raise CompetitionError(f"{train}: no images; expected train/<wnid>/images/*.JPEG")
    return images


def _val(folder: Path, wnids: set[str]) -> list[tuple[Path, str]]:
    """(image, wnid) of every val image, labelled by val_annotations.txt."""
    path = folder / VAL_ANNOTATIONS
    images = {p.name: p for p in _images_in(folder / "val" / "images")}
    labelled: dict[str, str] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) < 2:
            raise CompetitionError(
                f"{path}: line {line}: expected tab-separated file, wnid and box"
            )
        name, wnid = fields[0].strip(), fields[1].strip()
        if name not in images:
            raise CompetitionError(
                f"{path}: line {line}: {name!r} has no image in {folder / 'val' / 'images'}"
            )
        if wnid not in wnids:
            raise CompetitionError(f"{path}: line {line}: wnid {wnid!r} is not in {folder / WNIDS}")
        if name in labelled:
            raise CompetitionError(f"{path}: line {line}: {name} is annotated twice")
        labelled[name] = wnid
    unlabelled = sorted(images.keys() - labelled.keys())
    if unlabelled:
        raise CompetitionError(
            f"{images[unlabelled[0]]}: no line of {path} labels it "
            f"({len(unlabelled)} val images without one)"
        )
    return [(images[name], labelled[name]) for name in sorted(labelled)]


def _words(path: Path, wnids: set[str]) -> dict[str, str]:
    """wnid -> its words (the first three synonyms), for the wnids of the competition."""
    if not path.is_file():
        log.warning("%s not found: classes are shown by wnid", path)
        return {}
    words = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        wnid, _, names = text.partition("\t")
        if wnid in wnids and names.strip():
            words[wnid] = ", ".join(n.strip() for n in names.split(",")[:3])
    missing = sorted(wnids - words.keys())
    if missing:
        log.warning(
            "%s names no words for %d wnids (e.g. %s): shown by wnid",
            path,
            len(missing),
            missing[0],
        )
    return words
