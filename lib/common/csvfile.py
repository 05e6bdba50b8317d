"""Read a CSV file a user gave (a classes file, a target prior, a sample submission, a
submission to check): UTF-8 text in, rows of strings out.

A file that is missing, a folder, not UTF-8 text or not parseable as CSV, or that lacks a
column the reader needs, is a UserError naming the file, what it was read as and what to do:
one line, never a traceback.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from lib.common.errors import UserError
from lib.common.ids import ALLOWED as ALLOWED_IDS
from lib.common.ids import is_id_text

# An integer id or label as Kaggle and our writers spell it: no sign, spaces or leading zeros;
# at most 19 digits, as it must fit in int64 (the predictions files' ids).
CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,18}")
INT64_MAX = 2**63 - 1


def read_rows(path: Path, *, what: str, bom: bool = False) -> list[list[str]]:
    """Every row of the CSV at `path` (blank lines give empty rows), read as `what` ("classes
    file"). `bom`: drop a leading byte-order mark (spreadsheets write one); otherwise it stays
    in the first field, for the caller to see."""
    text = _read_utf8(Path(path), what=what, bom=bom)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return list(reader)
    except csv.Error as err:  # e.g. a field past csv's size limit: not a CSV
        raise UserError(
            f"{path}: {what} is not a readable CSV (line {reader.line_num}: {err})"
        ) from None


def _read_utf8(path: Path, *, what: str, bom: bool) -> str:
    """The whole file decoded at once, so that a decoding error's offset is the file's."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: {what} is a folder; expected a CSV file") from None
    try:
        return data.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(
            f"{path}: {what} is not UTF-8 text (line {line}, byte {err.start}: "
            f"{err.reason}); save it as a UTF-8 CSV"
        ) from None


def read_columns(
    path: Path, *, what: str, columns: Sequence[str]
) -> list[tuple[int, dict[str, str]]]:
    """The `columns` of every non-blank row under the header of the CSV at `path`, with the
    row's line number: ``[(2, {"label_id": "1", "name": "cat"}), ...]``."""
    rows = read_rows(path, what=what, bom=True)
    header = rows[0] if rows else []
    if not set(columns) <= set(header):
        raise UserError(
            f"{path}: {what} needs the columns {','.join(columns)}; found "
            f"{','.join(header[:5]) or 'no header'}"
        )
    where = [header.index(name) for name in columns]
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(
                f"{path}: line {line} of the {what} has {len(row)} fields; its "
                f"header has {len(header)}"
            )
        records.append((line, {name: row[i] for name, i in zip(columns, where, strict=True)}))
    return records


def plain_int(text: str) -> int | None:
    """`text` as an integer when it is one written plainly (``CANONICAL_INT``, <= int64's
    maximum); else None."""
    if CANONICAL_INT.fullmatch(text) and int(text) <= INT64_MAX:
        return int(text)
    return None


def int_field(text: str, *, path: Path, line: int, column: str) -> int:
    """`text` as a non-negative integer written plainly; else a UserError naming the cell."""
    value = plain_int(text)
    if value is None:
        raise UserError(
            f"{path}: line {line}: {column} {text[:40]!r} is not allowed: expected "
            "a non-negative integer (int64) written without spaces or leading zeros"
        )
    return value


def id_field(text: str, *, path: Path, line: int, column: str) -> str:
    """`text` when it is an image id's text (``lib.common.ids``), kept exactly as spelt; else a
    UserError naming the cell."""
    if not is_id_text(text):
        raise UserError(
            f"{path}: line {line}: {column} {text[:40]!r} is not allowed: expected "
            f"an image id: {ALLOWED_IDS}"
        )
    return text
