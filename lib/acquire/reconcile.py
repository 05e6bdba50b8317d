"""Bring the images already downloaded in line with the competition lists, losing none.

In: ``{split: [ImageRecord, ...]}``, the images folder, the folder that holds the images no
longer listed (``removed_dir``, by default ``<images_dir>_removed`` beside it) and
``folder_of(record)``, the folder a record's image belongs in (``lib.acquire.download``).

Out, on disk, before any fetch: every image the download wrote (``<split>/<label>/<id>.<ext>``
or ``test/<id>.<ext>``, ``<ext>`` one of ``STORED_EXTENSIONS``) that a list still names is in
its record's folder: moved there when its label folder changed (a new label, or zero-padding
widened by a larger label id). An image no longer listed (or no longer under that split) is
moved to the same place under ``removed_dir`` (``<split>/<label>/<id>.<ext>``); one listed
again that is only there is moved back, so it is never fetched again. Every move is a rename
(across file systems, a whole copy, then the delete), so an interrupted run leaves each image
in one place or the other, never in neither and never half. A file named ``<id>.<ext>`` (an id
as ``lib.common.ids`` allows, a stored extension) in those folders is taken for an image: with
string ids (``cat.jpg`` may be image ``cat``) one no list names is set aside, never deleted.
Files of other names (``.DS_Store``, ``notes.txt``, ``x.jpg.part``, ``a b.jpg``) and folders
that are no label are left where they are.
Returned: ``Reconciled``, how many images were moved, set aside and restored.

With ``refuse_shrinking``, nothing moves when the lists lost most of what is on disk: a
split listing fewer than half the images it has there (a test folder one level down, an
emptied list), or a labelled split listing fewer classes than it has label folders with images
(a class whose images moved into a sub-folder) stops with ``ShrunkError`` naming the split and
the counts; a wanted change goes through once that split's folder is moved aside.

Images are matched by split and ``image_id`` (ids repeat across splits: iMaterialist's train
and validation both start at 1); memory follows the files on disk.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lib.acquire.records import LABELLED_SPLITS, SPLITS, ImageRecord
from lib.acquire.resize import STORED_EXTENSIONS
from lib.common.errors import UserError
from lib.common.fileio import TMP_PREFIX, atomic_path

logger = logging.getLogger(__name__)

REMOVED_SUFFIX = "_removed"  # data/images -> data/images_removed
# what the download names an image: the id's text and a stored extension
_IMAGE_NAME = re.compile(r"([A-Za-z0-9_-]{1,128})\.([a-z]+)", re.ASCII)

Key = tuple[str, str]  # (split, image id as in the file name)


class ShrunkError(UserError):
    """The lists name far fewer images, or fewer classes, than the images folder holds."""


@dataclass
class Reconciled:
    moved: int = 0  # to their record's new label folder
    set_aside: int = 0  # no longer listed: into removed_dir
    restored: int = 0  # listed again: back from removed_dir


def default_removed_dir(images_dir: Path) -> Path:
    """The folder beside ``images_dir`` that holds the images no longer listed."""
    images_dir = Path(images_dir).absolute()  # "." has no name to add the suffix to
    return images_dir.with_name(images_dir.name + REMOVED_SUFFIX)


def image_stem(name: str) -> str | None:
    """The image id in a file name the download writes (``"12.jpg" -> "12"``), else None."""
    match = _IMAGE_NAME.fullmatch(name)
    return match.group(1) if match and match.group(2) in STORED_EXTENSIONS else None


def reconcile(
    records_by_split: dict[str, list[ImageRecord]],
    images_dir: Path,
    removed_dir: Path,
    folder_of: Callable[[ImageRecord], Path],
    *,
    refuse_shrinking: bool = False,
) -> Reconciled:
    """Move images between their label folders, ``images_dir`` and ``removed_dir`` so that
    ``images_dir`` holds exactly the listed images it can; see the module docstring.
    ``refuse_shrinking``: first ``check_not_shrunk`` (the download's re-runs)."""
    images_dir, removed_dir = Path(images_dir), Path(removed_dir)
    on_disk = scan_images(images_dir)
    if refuse_shrinking:
        check_not_shrunk(records_by_split, on_disk, images_dir)
    aside = scan_images(removed_dir) if removed_dir.is_dir() else {}
    counts = Reconciled()
    for record in _all_records(records_by_split):
        key = (record.split, str(record.image_id))
        paths, stored = on_disk.pop(key, []), aside.pop(key, [])
        if paths or stored:
            _place(paths, stored, folder_of(record), images_dir, removed_dir, counts)
    for paths in on_disk.values():  # no longer listed
        for path in paths:
            _set_aside(path, images_dir, removed_dir)
            counts.set_aside += 1
    remove_empty_label_folders(images_dir)
    if removed_dir.is_dir():
        remove_empty_label_folders(removed_dir)
    _log(counts, removed_dir)
    return counts


def scan_images(root: Path) -> dict[Key, list[Path]]:
    """``{(split, id): [paths]}`` of the files under ``root`` named as the download names
    images, in the folders where it writes them."""
    found: dict[Key, list[Path]] = {}
    for split in SPLITS:
        for folder in _image_folders(root / split, labelled=split in LABELLED_SPLITS):
            with os.scandir(folder) as entries:
                for entry in entries:
                    stem = image_stem(entry.name)
                    if stem is not None and entry.is_file():
                        found.setdefault((split, stem), []).append(Path(entry.path))
    for paths in found.values():
        paths.sort()  # the same choice on every run when there are several
    return found


def check_not_shrunk(
    records_by_split: dict[str, list[ImageRecord]], on_disk: dict[Key, list[Path]], images_dir: Path
) -> None:
    """ShrunkError when a split lists fewer than half the images it has on disk, or a labelled
    split fewer classes than it has label folders with images (see the module docstring)."""
    for split in SPLITS:
        disk = [paths[0] for (s, _), paths in on_disk.items() if s == split]
        listed = records_by_split.get(split, [])
        folder = images_dir / split
        if 2 * len(listed) < len(disk):
            raise ShrunkError(
                f"{folder} holds {len(disk)} images but the competition now lists "
                f"{len(listed)} {split} images: were they moved (a sub-folder, another file)? "
                f"if the competition did change, move {folder} aside and run again"
            )
        if split not in LABELLED_SPLITS:
            continue
        disk_labels = {int(path.parent.name) for path in disk}
        listed_labels = {record.label for record in listed}
        if len(listed_labels) < len(disk_labels):
            gone = sorted(disk_labels - listed_labels)
            raise ShrunkError(
                f"{folder} holds images of {len(disk_labels)} classes but the competition now "
                f"lists {len(listed_labels)}"
                + (
                    f" (label folders no longer listed: {', '.join(map(str, gone[:5]))})"
                    if gone
                    else ""
                )
                + ": has a class lost its images (moved into a sub-folder, renamed)? if the "
                f"competition did change, move {folder} aside and run again"
            )


def remove_empty_label_folders(root: Path) -> None:
    """Delete the label folders under ``root``'s labelled splits that hold nothing, or only a
    killed run's temp files (no later run writes into an old label folder to clean them)."""
    for split in LABELLED_SPLITS:
        for folder in _image_folders(root / split, labelled=True):
            names = os.listdir(folder)
            if all(name.startswith(TMP_PREFIX) for name in names):
                for name in names:
                    (folder / name).unlink()
                folder.rmdir()


def _image_folders(split_dir: Path, *, labelled: bool) -> list[Path]:
    """The folders of a split the download writes into: its label folders (all digits), or
    the split folder itself."""
    if not split_dir.is_dir():
        return []
    if not labelled:
        return [split_dir]
    with os.scandir(split_dir) as entries:
        return sorted(
            Path(entry.path)
            for entry in entries
            if entry.name.isascii() and entry.name.isdigit() and entry.is_dir(follow_symlinks=False)
        )


def _all_records(records_by_split: dict[str, list[ImageRecord]]) -> Iterator[ImageRecord]:
    for records in records_by_split.values():
        yield from records


def _place(
    paths: list[Path],
    stored: list[Path],
    folder: Path,
    images_dir: Path,
    removed_dir: Path,
    counts: Reconciled,
) -> None:
    """Have a listed image in ``folder``: the copies already there stay (``lib.acquire.download``
    keeps one), else one from another label folder is moved there, else one set aside earlier
    is restored. Copies left in other label folders are set aside; set-aside copies that are
    not needed stay where they are."""
    moved = None
    if paths and all(path.parent != folder for path in paths):
        moved = paths[0]
        _move(moved, folder / moved.name)
        counts.moved += 1
    elif not paths:
        source = next((path for path in stored if path.parent.name == folder.name), stored[0])
        _move(source, folder / source.name)
        counts.restored += 1
    for path in paths:
        if path is not moved and path.parent != folder:
            _set_aside(path, images_dir, removed_dir)
            counts.set_aside += 1


def _set_aside(path: Path, images_dir: Path, removed_dir: Path) -> None:
    """Move ``path`` to the same place under ``removed_dir`` (replacing an older copy of the
    same image set aside there)."""
    _move(path, removed_dir / path.relative_to(images_dir))


def _move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; across file systems (one folder a mount or symlink),
    copy it atomically first, then delete the source."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        with atomic_path(target) as tmp:
            shutil.copy2(source, tmp)
        source.unlink()


def _log(counts: Reconciled, removed_dir: Path) -> None:
    if counts.moved:
        logger.info("moved %d images to their new label folders", counts.moved)
    if counts.set_aside:
        logger.info(
            "moved %d images that the lists no longer name to %s (they come back from "
            "there if listed again)",
            counts.set_aside,
            removed_dir,
        )
    if counts.restored:
        logger.info("restored %d images listed again from %s", counts.restored, removed_dir)
