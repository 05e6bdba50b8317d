"""Find exact duplicate images by content hash.

In: image file paths. Out: one hex digest per file (BLAKE2b of the bytes, computed by a
process pool), and group ids that give every set of byte-identical files the same id.
Duplicates matter for folds: a copy in training and its twin in the held-out fold would inflate
the validation score, so each group must stay in one fold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lib.common.pools import process_pool
from lib.common.progress import progress

_BLOCK = 1 << 20


def file_digest(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def content_hashes(paths: Sequence[Path], *, workers: int = 0) -> list[str]:
    """The digest of each file, in the order of `paths`."""
    names = [str(p) for p in paths]
    with process_pool(workers) as pool:
        return list(
            progress(pool.imap(file_digest, names, chunksize=64), total=len(names), desc="hash")
        )


def group_ids(hashes: pd.Series) -> pd.Series:
    """An integer per row; rows with the same hash share it (numbered in order of appearance)."""
    return pd.Series(pd.factorize(hashes)[0], index=hashes.index, name="group")
