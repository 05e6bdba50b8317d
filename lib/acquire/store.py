"""Validate, shrink and write one downloaded image; check one image already on disk.

In: a downloaded body, the folder and file stem it goes to, and ``ImageLimits``; or the path of
an image already on disk. Out: the image written atomically as ``<folder>/<stem>.<ext>``
(``write_bytes``, the cheapest atomic way the system allows), or the reason it was refused
(``lib.acquire.resize``); for an image on disk, whether it is fine, was shrunk in place, or was
broken and deleted.

Both run in the download's worker processes (``lib.acquire.fetch_workers``).
"""

from __future__ import annotations

import os
from pathlib import Path

from lib.acquire.oskit import link_unnamed_file, open_unnamed_file
from lib.acquire.resize import ImageLimits, check_header, prepare_image
from lib.common.decoded import digest
from lib.common.fileio import disk_full, temp_name

EXISTING_OK, EXISTING_RESIZED, EXISTING_BAD = "ok", "resized", "bad"


def store(
    body: bytes | bytearray, folder: str, stem: str, limits: ImageLimits
) -> tuple[str | None, int, bool]:
    """Validate (and maybe shrink) ``body``, write it as ``folder/stem.<ext>``.

    Returns ``(reason, 0, False)`` when refused, else ``(None, bytes written, resized)``.
    """
    reason, written, resized, _ = store_decoded(body, folder, stem, limits)
    return reason, written, resized


def store_decoded(
    body: bytes | bytearray, folder: str, stem: str, limits: ImageLimits
) -> tuple[str | None, int, bool, bytes]:
    """``store``, and the digest (``lib.common.decoded``) of the bytes written, which decoded
    in full (b"" when refused)."""
    prepared = prepare_image(body, limits)
    if prepared.data is None:
        return prepared.reason, 0, False, b""
    write_bytes(Path(folder) / f"{stem}.{prepared.extension}", prepared.data)
    return None, len(prepared.data), prepared.resized, digest(prepared.data)


def check_existing(path: str, limits: ImageLimits) -> str:
    """An image already on disk: ok from its header and last bytes; shrunk in place if larger
    than ``max_side``; decoded in full when its end does not show it whole (kept if it decodes,
    as a download would keep it); deleted if broken (it is then fetched again)."""
    size, reason, complete = check_header(path, limits)
    if size is not None and complete and (limits.max_side is None or max(size) <= limits.max_side):
        return EXISTING_OK
    if reason is None:
        prepared = prepare_image(Path(path).read_bytes(), limits)
        if prepared.data is not None and not prepared.resized:
            return EXISTING_OK  # whole after all (e.g. bytes after the end marker)
        if prepared.data is not None:
            target = Path(path).with_name(f"{Path(path).name.partition('.')[0]}.jpg")
            write_bytes(target, prepared.data)
            if target != Path(path):
                Path(path).unlink()
            return EXISTING_RESIZED
    Path(path).unlink(missing_ok=True)
    return EXISTING_BAD


def write_bytes(path: Path, data: bytes | bytearray) -> None:
    """Write ``data`` as ``path`` so that readers never see half a file, even if the process
    is killed mid-write: the name appears only once every byte is in.

    On Linux the bytes go into an unnamed file in the folder, which is then linked under its
    name (``lib.acquire.oskit.open_unnamed_file``): a killed writer leaves nothing behind.
    Elsewhere, and to replace a file already there, a temp file beside it (``TMP_PREFIX``;
    the download deletes those a killed run left), then a rename. Unlike ``atomic_path``, the
    folder must exist.
    """
    try:
        if not _write_unnamed_then_link(path, data):
            _write_named_then_rename(path, data)
    except OSError as err:
        full = disk_full(path, err)
        if full is not None:
            raise full from err
        raise


def _write_unnamed_then_link(path: Path, data: bytes | bytearray) -> bool:
    """``write_bytes`` through an unnamed file; False, with nothing written, where it cannot
    be done (see ``open_unnamed_file``, or ``path`` exists already)."""
    fd = open_unnamed_file(path.parent)
    if fd is None:
        return False
    try:
        _write_all(fd, data)
        link_unnamed_file(fd, path)
        return True
    except FileExistsError:
        return False  # replacing a file already there: the rename does that atomically
    finally:
        os.close(fd)  # an unnamed file is freed here


def _write_named_then_rename(path: Path, data: bytes | bytearray) -> None:
    tmp = path.with_name(temp_name(path.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # our half-written temp file
        raise


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
