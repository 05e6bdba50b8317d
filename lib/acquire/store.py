"""Validate, shrink and write one downloaded image; check one image already on disk.

In: a downloaded body, the folder and file stem it goes to, and ``ImageLimits``; or the path of
an image already on disk. Out: the image written atomically as ``<folder>/<stem>.<ext>``
(``lib.common.fileio.write_bytes``), or the reason it was refused (``lib.acquire.resize``); for
an image on disk, whether it is fine, was shrunk in place, or was broken and deleted.

Both run in the download's worker processes (``lib.acquire.fetch_workers``).
"""

from __future__ import annotations

from pathlib import Path

from lib.acquire.resize import ImageLimits, check_header, prepare_image
from lib.common.fileio import write_bytes

EXISTING_OK, EXISTING_RESIZED, EXISTING_BAD = "ok", "resized", "bad"


def store(body: bytes | bytearray, folder: str, stem: str, limits: ImageLimits
          ) -> tuple[str | None, int, bool]:
    """Validate (and maybe shrink) ``body``, write it as ``folder/stem.<ext>``.

    Returns ``(reason, 0, False)`` when refused, else ``(None, bytes written, resized)``.
    """
    prepared = prepare_image(body, limits)
    if prepared.data is None:
        return prepared.reason, 0, False
    write_bytes(Path(folder) / f"{stem}.{prepared.extension}", prepared.data)
    return None, len(prepared.data), prepared.resized


def check_existing(path: str, limits: ImageLimits) -> str:
    """An image already on disk: ok from its header and last bytes; shrunk in place if larger
    than ``max_side``; decoded in full when its end does not show it whole (kept if it decodes,
    as a download would keep it); deleted if broken (it is then fetched again)."""
    size, reason, complete = check_header(path, limits)
    if complete and (limits.max_side is None or max(size) <= limits.max_side):
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

