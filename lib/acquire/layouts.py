"""Read a competition folder in any of Kaggle's usual shapes.

In: the competition folder, its format (``auto``, ``json``, ``labels_csv``, ``folders``) and, for
``labels_csv``, the names of the id and label columns (``auto``: detected).
Out: a ``Competition``: the format, ``{split: [ImageRecord, ...]}`` as the download takes them
(sorted by id, labelled splits with label ids, test without) and, when the labels are names,
their label ids' names.

Formats:
- ``json``: ``train.json`` (+ ``validation.json``, ``test.json``), iMaterialist's URL lists
  (``lib.acquire.competition_json``);
- ``labels_csv``: ``train/<id>.<ext>``, ``labels.csv`` (a column naming each train image, by
  file name or stem, and a column of labels), ``test/<id>.<ext>`` and optionally
  ``sample_submission.csv`` (Dog Breed Identification's shape);
- ``folders``: ``train/<class name>/<id>.<ext>`` and ``test/<id>.<ext>``;
- ``tinyimagenet`` (``lib.acquire.tinyimagenet``) and ``named_files``, labels in the file names
  (``lib.acquire.named_files``).
``auto`` takes ``json`` when ``train.json`` is there, else ``tinyimagenet`` when ``wnids.txt``
and ``train/`` are, else ``labels_csv`` when ``labels.csv`` is, else ``folders`` when
``train/`` is, else ``named_files`` when ``images/`` is.

Folders are listed the way Kaggle zips unpack: a folder with no images of its own whose images
sit in sub-folders (``test/test/*.jpg``, ``train/<class name>/batch1/*.jpg``) is read from them,
as is ``train/train/<class name>/``; a folder holding images both directly and in a sub-folder
is refused naming the sub-folder (which set is meant is unknown), and an empty one is refused.
Hidden entries and ``__MACOSX`` are skipped. Label and id cells are stripped of spaces around
them, with a warning naming the first such line.

Ids are the images' file stems and must be ids (``lib.common.ids``); a file of another name is
refused in one line, never turned into a path. Labels: when every label is an integer written
plainly, those integers are the label ids; else the names, sorted in code point order, get the
ids 1..N (``class_names``), the order the classes file records. Each record points at its image
with a ``file:`` URL relative to the folder, so the download stage validates and copies the
images exactly as it stores downloaded ones.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lib.acquire.competition_json import load_competition
from lib.acquire.records import LABELLED_SPLITS, CompetitionError, ImageRecord
from lib.common.csvfile import plain_int, read_rows
from lib.common.ids import ALLOWED as ALLOWED_IDS
from lib.common.ids import id_order, is_id_text, repeated_stem
from lib.common.images import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

FORMATS = ("auto", "json", "labels_csv", "folders", "tinyimagenet", "named_files")
AUTO = "auto"
LABELS_CSV = "labels.csv"


@dataclass(frozen=True)
class Competition:
    folder: Path
    format: str  # json, labels_csv or folders (never auto)
    records: dict[str, list[ImageRecord]]
    class_names: dict[int, str] | None  # label id -> name when the labels are names
    # label id -> the name reports show, when it differs (TinyImageNet: words for wnids)
    display_names: dict[int, str] | None = None
    # test id -> label id, when the test split's answers are known (a held-out share)
    test_answers: dict[str, int] | None = None

    @property
    def labels(self) -> set[int]:
        """Every label id of the labelled splits."""
        return {
            r.label
            for split in LABELLED_SPLITS
            for r in self.records.get(split, ())
            if r.label is not None
        }

    @property
    def test_ids(self) -> list[str]:
        """The test images' ids (text), in id order; empty without a test split."""
        return [str(record.image_id) for record in self.records.get("test", ())]


def read_competition(
    folder: Path,
    *,
    fmt: str = AUTO,
    id_column: str = AUTO,
    label_column: str = AUTO,
    label_pattern: str | None = None,
    test_share: float = 0.2,
) -> Competition:
    """The competition in ``folder``, read as ``fmt`` (see the module docstring)."""
    folder = Path(folder)
    fmt = detect_format(folder) if fmt == AUTO else fmt
    if fmt == "tinyimagenet":
        from lib.acquire.tinyimagenet import read_tinyimagenet

        return read_tinyimagenet(folder)
    if fmt == "named_files":
        from lib.acquire.named_files import read_named_files

        return read_named_files(folder, label_pattern=label_pattern, test_share=test_share)
    if fmt == "json":
        records = load_competition(folder)
        _check_not_empty(folder, records)
        return Competition(folder, fmt, records, None)
    if fmt == "labels_csv":
        train = _labels_csv_train(folder, id_column=id_column, label_column=label_column)
    elif fmt == "folders":
        train = _folders_train(folder)
    else:
        raise ValueError(f"format {fmt!r}; allowed: {', '.join(FORMATS)}")
    names, label_of = label_ids(label for _, label in train)
    records = {"train": _records("train", folder, [(p, label_of[n]) for p, n in train])}
    if (folder / "test").is_dir():
        records["test"] = _records("test", folder, [(p, None) for p in _images_in(folder / "test")])
    return Competition(folder, fmt, records, names)


def _check_not_empty(folder: Path, records: dict[str, list[ImageRecord]]) -> None:
    """A split file that lists no image is refused: a test set of none would make a
    header-only submission."""
    for split, listed in records.items():
        if not listed:
            raise CompetitionError(
                f"{folder / f'{split}.json'}: 'images' is empty; expected the {split} images"
            )


def read_test_competition(
    folder: Path,
    *,
    fmt: str = AUTO,
    id_column: str = AUTO,
    label_column: str = AUTO,
    label_pattern: str | None = None,
    test_share: float = 0.2,
) -> Competition:
    """``read_competition``, for the stages that submit: a competition without test images is
    a UserError."""
    competition = read_competition(
        folder,
        fmt=fmt,
        id_column=id_column,
        label_column=label_column,
        label_pattern=label_pattern,
        test_share=test_share,
    )
    if "test" not in competition.records:
        raise CompetitionError(
            f"{folder}: no test split (test.json, or test/ images): no test ids to submit for"
        )
    return competition


def detect_format(folder: Path) -> str:
    """json, labels_csv or folders, from what ``folder`` holds; CompetitionError if none."""
    if (folder / "train.json").is_file():
        return "json"
    if (folder / "wnids.txt").is_file() and (folder / "train").is_dir():
        return "tinyimagenet"
    if (folder / LABELS_CSV).is_file() and (folder / "train").is_dir():
        return "labels_csv"
    if (folder / "train").is_dir():
        return "folders"
    if (folder / "images").is_dir():
        return "named_files"
    raise CompetitionError(
        f"{folder}: no competition found: expected train.json (URL lists), "
        f"train/ with {LABELS_CSV}, wnids.txt or train/<class name>/ "
        "folders, or images/ (labels in the file names)"
    )


def label_ids(labels: Iterable[str]) -> tuple[dict[int, str] | None, dict[str, int]]:
    """(names, label text -> label id): integers written plainly are their own ids (names
    None); other labels get 1..N in sorted order, named by their text."""
    texts = sorted(set(labels))
    if all(plain_int(text) is not None for text in texts):
        return None, {text: int(text) for text in texts}
    return (
        {i: text for i, text in enumerate(texts, start=1)},
        {text: i for i, text in enumerate(texts, start=1)},
    )


def _records(split: str, folder: Path, images: list[tuple[Path, int | None]]) -> list[ImageRecord]:
    records = [
        ImageRecord(
            split=split,
            image_id=path.stem,
            urls=(f"file:{quote(path.relative_to(folder).as_posix())}",),
            label=label,
        )
        for path, label in images
    ]
    return sorted(records, key=lambda record: id_order(record.image_id))


def _images_in(folder: Path) -> list[Path]:
    """The image files of ``folder`` (``_list_images``), each named by an id, no id twice;
    else CompetitionError naming the file."""
    images = _list_images(folder)
    _check_stems(images)
    return images


def _list_images(folder: Path) -> list[Path]:
    """The image files of ``folder``: those directly in it; or, when it holds none, those of
    its sub-folders at any depth (``test/test/*.jpg``). CompetitionError when it holds none at
    all, or holds images both directly and in a sub-folder (naming the sub-folder)."""
    direct, nested = _walk_images(folder)
    if direct and nested:
        sub = nested[0].parent
        raise CompetitionError(
            f"{sub}: {sum(p.parent == sub for p in nested)} images in a sub-folder of {folder}, "
            f"which holds {len(direct)} images itself: which are meant? move one set out"
        )
    if not direct and not nested:
        raise CompetitionError(
            f"{folder}: no images (expected <id>.<ext> files, extensions "
            f"{', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if nested:
        folders = sorted({p.parent.relative_to(folder).as_posix() for p in nested})
        logger.info(
            "%s: %d images read from its sub-folders (%s)",
            folder,
            len(nested),
            ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else ""),
        )
    return direct or nested


def _walk_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(images directly in ``folder``, images in its sub-folders), each sorted; hidden files
    and folders, and ``__MACOSX`` (a zip's resource forks), skipped. ``folder`` itself may be
    a symlink; links to folders inside it are not followed."""
    direct: list[Path] = []
    nested: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        here = Path(root)
        images = sorted(
            here / name
            for name in files
            if not _hidden(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
        images = [p for p in images if p.is_file()]
        (direct if here == folder else nested).extend(images)
    return direct, nested


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _check_stems(images: list[Path]) -> None:
    for path in images:
        if not is_id_text(path.stem):
            raise CompetitionError(
                f"{path}: the file name is no image id; expected <id>.<ext>, the id {ALLOWED_IDS}"
            )
    repeated = repeated_stem(images)
    if repeated:
        path, first = repeated
        raise CompetitionError(
            f"{path}: image id {path.stem!r} is taken by {first} too; each image needs its own id"
        )


def _folders_train(folder: Path) -> list[tuple[Path, str]]:
    """(image, class folder name) for every image under ``train/<class name>/`` (at any depth
    below it: ``train/<class name>/batch1/``); ``train/train/<class name>/`` is read too."""
    train = _unnest(folder / "train")
    classes = sorted(p for p in train.iterdir() if p.is_dir() and not _hidden(p.name))
    strays = sorted(
        p
        for p in train.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p.name) and p.is_file()
    )
    if strays:
        logger.warning(
            "%s: %d images outside any class folder are not used (first: %s)",
            train,
            len(strays),
            strays[0].name,
        )
    images: list[tuple[Path, str]] = []
    for cls in classes:
        direct, nested = _walk_images(cls)
        if nested:
            logger.info("%s: %d images read from its sub-folders", cls, len(nested))
        name = cls.name.strip()
        if name != cls.name:
            logger.warning("%s: class folder name has spaces around it: class %r", cls, name)
        images += [(path, name) for path in sorted(direct + nested)]
    if not images:
        raise CompetitionError(
            f"{train}: no images in class folders; expected train/<class name>/<id>.<ext>"
        )
    found = sorted({name for _, name in images})
    if len(found) < 2:
        raise CompetitionError(
            f"{train}: images of one class only ({found[0]!r}); expected "
            "train/<class name>/<id>.<ext> for two classes or more"
        )
    empty = [cls for cls in classes if cls.name.strip() not in found]
    if empty:
        raise CompetitionError(
            f"{empty[0]}: class folder without images ({len(empty)} such); "
            "expected <id>.<ext> files in it, or remove it"
        )
    _check_stems([path for path, _ in images])
    return images


def _unnest(folder: Path) -> Path:
    """``folder``, or ``folder/<its own name>`` when that is all it holds (``train/train/``,
    as many Kaggle zips unpack)."""
    entries = [p for p in folder.iterdir() if not _hidden(p.name)]
    if len(entries) == 1 and entries[0].name == folder.name and entries[0].is_dir():
        logger.info("%s: read from %s", folder, entries[0])
        return entries[0]
    return folder


def _labels_csv_train(folder: Path, *, id_column: str, label_column: str) -> list[tuple[Path, str]]:
    """(image, label text) for every image of ``train/``, labelled by ``labels.csv``."""
    path = folder / LABELS_CSV
    rows = read_rows(path, what="labels file", bom=True)
    header, body = (rows[0] if rows else []), [(n, r) for n, r in enumerate(rows[1:], 2) if r]
    header, body = [cell.strip() for cell in header], _stripped(path, body)
    if len(header) < 2:
        raise CompetitionError(f"{path}: expected a header of an id column and a label column")
    for line, row in body:
        if len(row) != len(header):
            raise CompetitionError(
                f"{path}: line {line} has {len(row)} fields; its header has {len(header)}"
            )
    images = {p.stem: p for p in _images_in(folder / "train")}
    names = {p.name: p.stem for p in images.values()}
    ids_at = _id_column(path, header, body, images, names, id_column)
    labels_at = _label_column(path, header, ids_at, label_column)
    labelled: dict[str, str] = {}
    for line, row in body:
        image_id = names.get(row[ids_at], row[ids_at])
        if image_id not in images:
            raise CompetitionError(
                f"{path}: line {line}: {header[ids_at]} {row[ids_at]!r} has "
                f"no image in {folder / 'train'}"
            )
        if image_id in labelled:
            raise CompetitionError(
                f"{path}: line {line}: {header[ids_at]} {row[ids_at]!r} is "
                "labelled twice; each image needs exactly one label"
            )
        if not row[labels_at].strip():
            raise CompetitionError(f"{path}: line {line}: {header[labels_at]} is empty")
        labelled[image_id] = row[labels_at]
    unlabelled = sorted(images.keys() - labelled.keys(), key=id_order)
    if unlabelled:
        raise CompetitionError(
            f"{images[unlabelled[0]]}: no row of {path} labels it "
            f"({len(unlabelled)} train images without one)"
        )
    return [(images[i], labelled[i]) for i in sorted(labelled, key=id_order)]


def _stripped(path: Path, body: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """The rows with every cell stripped of spaces around it (``"shiba_inu "`` would otherwise
    be a class of its own); a warning names the first cell changed and how many were."""
    changed = [(line, cell) for line, row in body for cell in row if cell != cell.strip()]
    if changed:
        line, cell = changed[0]
        logger.warning(
            "%s: %d cells had spaces around them, stripped (first: line %d, %r)",
            path,
            len(changed),
            line,
            cell,
        )
    return [(line, [cell.strip() for cell in row]) for line, row in body]


def _id_column(
    path: Path,
    header: list[str],
    body: list[tuple[int, list[str]]],
    images: dict[str, Path],
    names: dict[str, str],
    chosen: str,
) -> int:
    """The column naming the train images: ``chosen``, or the first whose every value is an
    image's stem or file name."""
    if chosen != AUTO:
        return _column(path, header, chosen, "id_column")
    for at in range(len(header)):
        if all(row[at] in images or row[at] in names for _, row in body):
            return at
    raise CompetitionError(
        f"{path}: no column names the images of train/ (columns "
        f"{', '.join(header[:6])}); set id_column in params.yaml"
    )


def _label_column(path: Path, header: list[str], ids_at: int, chosen: str) -> int:
    if chosen != AUTO:
        return _column(path, header, chosen, "label_column")
    others = [at for at in range(len(header)) if at != ids_at]
    if len(others) != 1:
        raise CompetitionError(
            f"{path}: columns {', '.join(header[:6])}: which one holds the "
            "labels? set label_column in params.yaml"
        )
    return others[0]


def _column(path: Path, header: list[str], name: str, key: str) -> int:
    if header.count(name) != 1:
        found = Counter(header)[name]
        raise CompetitionError(
            f"{path}: {key} {name!r} is {'repeated in' if found else 'not in'}"
            f" the header ({', '.join(header[:6])})"
        )
    return header.index(name)
