"""Read and validate a competition's JSON URL lists.

In: a competition folder holding ``train.json`` (required) and ``validation.json`` /
``test.json`` (each optional), in the iMaterialist shape::

    {"images": [{"url": ["https://...", ...], "image_id": 1}, ...],
     "annotations": [{"image_id": 1, "label_id": 5}, ...]}

``url`` is a list of candidate URLs (mirrors, tried in order) or a single string; the test
split has no annotations (the key may be absent; if present it is ignored).

Out: ``{split: [ImageRecord, ...]}`` sorted by ``image_id`` (``lib.common.ids.id_order``), for
the splits whose file exists.

Everything is checked here, before any download starts: a bad value raises ``CompetitionError``
with a one-line message naming the file, the key or index, the value and what is allowed.
``image_id`` in particular must be an id (``lib.common.ids``: an integer up to int64's maximum, or
a string of letters, digits, ``-`` and ``_``), because it becomes a file name; a string such as
``"../x"`` is rejected, never turned into a path. An integer id and the same digits as a string are
one id (they name one file). ``label_id`` must fit in int64 (``INT64_MAX``): later stages hold
labels in numpy and pandas int64 columns. ``file:`` URLs must point inside the competition folder
(``file:images/1.png`` is relative to it); the downloader checks again, after following symlinks,
when it reads them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from lib.acquire.records import LABELLED_SPLITS, SPLITS, CompetitionError, ImageRecord
from lib.common.ids import ALLOWED as ALLOWED_IDS
from lib.common.ids import id_order, id_problem, id_text

logger = logging.getLogger(__name__)

URL_SCHEMES = ("file", "http", "https")

INT64_MAX = 2**63 - 1  # the largest image_id or label_id: later stages keep them as int64
_MAX_REPR = 80  # keep error messages on one readable line even for a huge bad value


def load_competition(competition_dir: Path) -> dict[str, list[ImageRecord]]:
    """Load every split file present in ``competition_dir``; ``train.json`` is required."""
    competition_dir = Path(competition_dir)
    train_path = competition_dir / "train.json"
    if not train_path.is_file():
        raise CompetitionError(
            f"{train_path}: file not found; a competition folder needs train.json "
            f"(validation.json and test.json are optional)"
        )
    records_by_split: dict[str, list[ImageRecord]] = {}
    for split in SPLITS:
        path = competition_dir / f"{split}.json"
        if not path.is_file():
            logger.info("%s not found: skipping the %s split", path, split)
            continue
        records_by_split[split] = load_split(path, split)
        logger.info("%s: %d images", path, len(records_by_split[split]))
    return records_by_split


def load_split(path: Path, split: str) -> list[ImageRecord]:
    """Parse and validate one split file; records come back sorted by ``image_id``."""
    path = Path(path)
    if split not in SPLITS:
        raise CompetitionError(f"{path}: split {split!r} is unknown; allowed: {', '.join(SPLITS)}")
    document = _read_json(path)
    images = _get_list(document, "images", path)
    urls_by_id = _parse_images(images, path, split)
    labels: dict[str, int] = {}
    if split in LABELLED_SPLITS:
        annotations = _get_list(document, "annotations", path)
        labels = _parse_annotations(annotations, urls_by_id, path)
    elif "annotations" in document:
        logger.debug("%s: ignoring the annotations of the %s split", path, split)
    return [
        ImageRecord(split=split, image_id=image_id, urls=urls, label=labels.get(id_text(image_id)))
        for image_id, urls in sorted(urls_by_id.values(), key=lambda item: id_order(item[0]))
    ]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as err:
        raise CompetitionError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
    except UnicodeDecodeError as err:
        raise CompetitionError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); JSON must be UTF-8"
        ) from err
    except RecursionError as err:  # the decoder recurses once per nesting level
        raise CompetitionError(
            f"{path}: JSON nested too deeply to read; expected an object with 'images' "
            f"(and 'annotations') lists of flat objects"
        ) from err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise CompetitionError(f"{path}: unreadable JSON: {_short(str(err))}") from err
    if not isinstance(document, dict):
        raise CompetitionError(
            f"{path}: top level is {type(document).__name__}; expected an object with "
            f"'images' (and 'annotations' for labelled splits)"
        )
    return document


def _get_list(document: dict[str, Any], key: str, path: Path) -> list[Any]:
    if key not in document:
        raise CompetitionError(f"{path}: missing key {key!r}; expected a list")
    value = document[key]
    if not isinstance(value, list):
        raise CompetitionError(f"{path}: {key} is {_short(value)}; expected a list")
    return value


def _parse_images(
    images: list[Any], path: Path, split: str
) -> dict[str, tuple[int | str, tuple[str, ...]]]:
    """``{id text: (image_id as given, urls)}``."""
    urls_by_id: dict[str, tuple[int | str, tuple[str, ...]]] = {}
    duplicates: list[tuple[int, str]] = []  # (index, id text)
    for index, image in enumerate(images):
        where = f"images[{index}]"
        entry = _as_object(image, where, path)
        image_id = _image_id(entry, where, path)
        if id_text(image_id) in urls_by_id:
            duplicates.append((index, id_text(image_id)))
            continue
        urls_by_id[id_text(image_id)] = (image_id, _parse_urls(entry, where, path, split, image_id))
    if duplicates:
        index, image_id = duplicates[0]
        ids = len({image_id for _, image_id in duplicates})
        raise CompetitionError(
            f"{path}: images[{index}].image_id {image_id} is a duplicate in {split} "
            f"({len(duplicates)} duplicate entries, {ids} distinct image_ids); each image_id "
            f"must appear once"
        )
    return urls_by_id


def _parse_annotations(
    annotations: list[Any], urls_by_id: dict[str, Any], path: Path
) -> dict[str, int]:
    """``{id text: label}``, every image of ``urls_by_id`` annotated exactly once."""
    labels: dict[str, int] = {}
    for index, annotation in enumerate(annotations):
        where = f"annotations[{index}]"
        entry = _as_object(annotation, where, path)
        image_id = id_text(_image_id(entry, where, path))
        label = _positive_int(entry, "label_id", where, path)
        if image_id not in urls_by_id:
            raise CompetitionError(
                f"{path}: {where}.image_id {image_id} has no image; "
                f"every annotation must refer to an image_id listed in images"
            )
        if image_id in labels:
            raise CompetitionError(
                f"{path}: {where}.image_id {image_id} is annotated twice; "
                f"each image needs exactly one annotation"
            )
        labels[image_id] = label
    unlabelled = sorted(urls_by_id.keys() - labels.keys(), key=id_order)
    if unlabelled:
        raise CompetitionError(
            f"{path}: image_id {unlabelled[0]} has no annotation ({len(unlabelled)} images "
            f"without one); each image of a labelled split needs exactly one annotation"
        )
    return labels


def _parse_urls(
    entry: dict[str, Any], where: str, path: Path, split: str, image_id: int | str
) -> tuple[str, ...]:
    if "url" not in entry:
        raise CompetitionError(f"{path}: {where} (image_id {image_id}) has no 'url' key")
    value = entry["url"]
    urls = [value] if isinstance(value, str) else value
    if (
        not isinstance(urls, list)
        or not urls
        or not all(isinstance(url, str) and url for url in urls)
    ):
        raise CompetitionError(
            f"{path}: {where}.url of {split} image_id {image_id} is {_short(value)}; "
            f"expected a non-empty string or a non-empty list of non-empty strings"
        )
    for url in urls:
        _check_url(url, path, split, image_id)
    return tuple(urls)


def _check_url(url: str, path: Path, split: str, image_id: int | str) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise CompetitionError(
            f"{path}: {split} image_id {image_id}: url {_short(url)} has scheme {scheme!r}; "
            f"allowed: {', '.join(URL_SCHEMES)}"
        )
    if scheme != "file" and not parts.hostname:
        raise CompetitionError(
            f"{path}: {split} image_id {image_id}: url {_short(url)} has no host; "
            f"expected http(s)://host/path"
        )
    if scheme == "file" and not _inside(parts.netloc, unquote(parts.path), path.parent):
        raise CompetitionError(
            f"{path}: {split} image_id {image_id}: url {_short(url)} points outside the "
            f"competition folder {path.parent}; file: URLs may only read files inside it"
        )


def _inside(netloc: str, file_path: str, folder: Path) -> bool:
    """Whether a file URL's path lies inside ``folder``, judged from the text alone."""
    if netloc not in ("", "localhost"):  # a file on another machine
        return False
    if not os.path.isabs(file_path):
        file_path = os.path.join(folder, file_path)
    target = Path(os.path.abspath(file_path))  # abspath also folds away "..": text only
    return target.is_relative_to(os.path.abspath(folder)) or target.is_relative_to(folder.resolve())


def _as_object(value: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CompetitionError(f"{path}: {where} is {_short(value)}; expected an object")
    return value


def _image_id(entry: dict[str, Any], where: str, path: Path) -> int | str:
    """``entry["image_id"]`` when it is an id (``lib.common.ids``), or CompetitionError naming
    the file, the entry and what is allowed."""
    value = entry.get("image_id")
    if "image_id" not in entry or id_problem(value) is not None:
        raise CompetitionError(
            f"{path}: {where}.image_id is {_describe(entry, 'image_id')}; expected {ALLOWED_IDS}"
        )
    return cast("int | str", value)  # id_problem found none: an int or an id's text


def _positive_int(entry: dict[str, Any], key: str, where: str, path: Path) -> int:
    return _int_in_range(entry, key, where, path, low=1)


def _int_in_range(entry: dict[str, Any], key: str, where: str, path: Path, *, low: int) -> int:
    """``entry[key]``, an integer from ``low`` to ``INT64_MAX``, or CompetitionError naming the
    file, the entry and the range."""
    value = entry.get(key)
    # bool is a subclass of int in Python, but `true` is no id
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= INT64_MAX:
        kind = "non-negative" if low == 0 else "positive"
        raise CompetitionError(
            f"{path}: {where}.{key} is {_describe(entry, key)}; expected a {kind} integer up "
            f"to 2**63 - 1 ({INT64_MAX})"
        )
    return value


def _describe(entry: dict[str, Any], key: str) -> str:
    return _short(entry[key]) if key in entry else "missing"


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # a value nested almost as deep as the decoder allows
        text = f"a {type(value).__name__} nested too deeply"
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."
