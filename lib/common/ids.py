"""Image ids: which values are ids, their text, and the order they sort in.

In: an id as a competition gives it: a JSON integer, or a string from JSON, a CSV cell or a
file name. Out: its text, or why it is refused (what is allowed), and a sort key.

An id is an integer from 0 to 2**63 - 1 (``INT64_MAX``), or a string of 1 to 128 ASCII letters,
digits, ``-`` and ``_`` (Dog Breed's ``000bec180eb18c7604dcecc8fe0dba07``). Nothing else: no
dots, separators, spaces or empty ids, so an id names a file (``<id>.<ext>``) and never a path.
After the competition reader every id is its text (an integer in plain decimal): folds.csv,
prediction files and submissions carry that text unchanged, as Kaggle matches ids as text.

Order (``id_order``): ids written as plain integers (``5001``, no leading zeros) first, in
numeric order, then the others in code point order; the same on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

MAX_LENGTH = 128
INT64_MAX = 2**63 - 1  # integer ids: later stages once kept them as int64, and Kaggle's do fit
ID_TEXT = re.compile(r"[A-Za-z0-9_-]{1,128}", re.ASCII)
PLAIN_INT = re.compile(r"0|[1-9][0-9]{0,18}", re.ASCII)
ALLOWED = f"an integer (0 to 2**63 - 1) or 1-{MAX_LENGTH} letters, digits, - and _"


def id_problem(value: Any) -> str | None:
    """None when ``value`` is an id (an int in range, or a str of the allowed characters);
    else what is allowed, for the caller's one-line error."""
    if isinstance(value, bool):  # a subclass of int, but `true` is no id
        return ALLOWED
    if isinstance(value, int):
        return None if 0 <= value <= INT64_MAX else ALLOWED
    if isinstance(value, str) and ID_TEXT.fullmatch(value):
        return None
    return ALLOWED


def id_text(value: int | str) -> str:
    """The text of an id that passed ``id_problem``: an int in plain decimal, a str as it is."""
    return str(value)


def is_id_text(text: str) -> bool:
    """Whether ``text`` (a CSV cell, a file stem) is an id's text."""
    return bool(ID_TEXT.fullmatch(text))


def id_order(text: int | str) -> tuple[int, int, str]:
    """Sort key: plain integers in numeric order, then other ids in code point order."""
    text = str(text)
    if PLAIN_INT.fullmatch(text) and int(text) <= INT64_MAX:
        return (0, int(text), "")
    return (1, 0, text)


def sorted_ids(ids: Iterable[int | str]) -> list[str]:
    """The ids' texts in ``id_order``."""
    return sorted((str(i) for i in ids), key=id_order)


def id_ranks(ids: Iterable[int | str]) -> np.ndarray:
    """Each id's rank in ``id_order`` (equal ids share one): a numeric key numpy can sort by."""
    texts = [str(i) for i in ids]
    rank = {text: r for r, text in enumerate(sorted(set(texts), key=id_order))}
    return np.array([rank[text] for text in texts], dtype=np.int64)


def repeated_stem(paths: Iterable[Path]) -> tuple[Path, Path] | None:
    """The first file whose stem (its id) an earlier file already has, with that earlier
    file; None when every stem is unique."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            return path, seen[path.stem]
        seen[path.stem] = path
    return None
