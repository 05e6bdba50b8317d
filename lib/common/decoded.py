"""The digests of image files already known to decode, kept beside the images.

In: the bytes of each image the download decoded in full before writing it (``digest``), and
an images folder. Out: ``images_dir/.decoded``, the sorted, distinct 16-byte BLAKE2b digests
of those files' bytes (16 bytes an image: about 3.4 MB for 214,000 images), and
``known_to_decode``: which of a list of hex digests (``lib.prepare.duplicates``, the same
hash) name bytes in it.

A digest names bytes, not a path: an image moved to another label folder stays known, and one
whose bytes changed since (edited, cut short, replaced by hand) is not, so it is decoded again.
Digests of images since deleted stay in the file; they name no file on disk and cost 16 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lib.common.fileio import atomic_path

DECODED_FILE = ".decoded"
DIGEST_SIZE = 16  # bytes: lib.prepare.duplicates.file_digest's BLAKE2b
_DTYPE = f"S{DIGEST_SIZE}"


def digest(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def read_decoded(images_dir: Path) -> np.ndarray:
    """The sorted digests of ``images_dir/.decoded`` (empty when there is none, or when its
    size is not a whole number of digests: then every image is decoded again)."""
    path = Path(images_dir) / DECODED_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if len(data) % DIGEST_SIZE:
        data = b""
    return np.frombuffer(data, dtype=_DTYPE)


def add_decoded(images_dir: Path, digests: bytes | bytearray) -> None:
    """Add ``digests`` (16 bytes each, one after another) to ``images_dir/.decoded``,
    atomically; nothing is written when there are none to add."""
    if not digests:
        return
    merged = np.unique(
        np.concatenate([read_decoded(images_dir), np.frombuffer(bytes(digests), dtype=_DTYPE)])
    )
    with atomic_path(Path(images_dir) / DECODED_FILE) as tmp:
        tmp.write_bytes(merged.tobytes())


def known_to_decode(hex_digests: Iterable[str], images_dir: Path) -> np.ndarray:
    """A bool per hex digest: whether ``images_dir/.decoded`` holds it."""
    wanted = np.array([bytes.fromhex(h) for h in hex_digests], dtype=_DTYPE)
    known = read_decoded(images_dir)
    if not len(wanted) or not len(known):
        return np.zeros(len(wanted), dtype=bool)
    return np.isin(wanted, known)
