"""Write files atomically: a crash or kill at any moment leaves either the old file or the new
one, never half of one.

``atomic_path`` hands a writer a temp path beside the target and renames it over the target
(the download writes its images its own, cheaper way: ``lib.acquire.store.write_bytes``). Files
get the mode the umask gives (0644 under umask 022), as `open` would give them.

A write that finds the disk full (or the quota spent) raises ``DiskFullError``, a UserError
naming the file and the space left, after deleting its temp file: the previous file, if any, is
untouched.

Temp files are named by ``temp_name``: ``TMP_PREFIX``, the writer's pid, then the target's name.
``remove_stale_temps`` deletes those a killed run left in a folder (a stage calls it on the
folders it writes, before writing), sparing those of a process still running.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lib.common.errors import UserError

log = logging.getLogger(__name__)
TMP_PREFIX = ".tmp"  # every temp file here starts with it
_OWNER = re.compile(re.escape(TMP_PREFIX) + r"-(\d+)-")  # the writer's pid in a temp_name
_FULL = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a failed write as a RuntimeError from its zip writer, without the errno:
# with this little space left, such an error is taken for a full disk
_NEARLY_FULL_BYTES = 16 << 20


class DiskFullError(UserError, OSError):
    """No space left (or the quota spent) writing a file; nothing of it was left behind."""


def disk_full(path: Path | str, err: BaseException) -> DiskFullError | None:
    """A DiskFullError naming ``path`` and the space left on its disk when ``err`` is a write
    that failed for lack of space, else None."""
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    full = isinstance(err, OSError) and err.errno in _FULL
    torch_write = isinstance(err, RuntimeError) and (
        "inline_container" in str(err) or "PytorchStreamWriter" in str(err)
    )
    if not full and not (torch_write and free is not None and free < _NEARLY_FULL_BYTES):
        return None
    left = f"{free / 1e6:.1f} MB free" if free is not None else "free space unknown"
    return DiskFullError(
        f"{path}: the disk is full ({left} in {folder}); nothing was "
        "written there (an older file is kept): free some space and run again"
    )


def temp_name(name: str, suffix: str = "") -> str:
    """A fresh temp file (or folder) name for a target called `name`: ``TMP_PREFIX``, this
    process's pid (``remove_stale_temps`` spares a running writer's), a random part, `name`."""
    return f"{TMP_PREFIX}-{os.getpid()}-{secrets.token_hex(4)}-{name}{suffix}"


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path in `path`'s folder; on success rename it to `path`, else delete it.

    `suffix` lets writers that insist on an extension (numpy's savez adds `.npz`) keep it.
    The temp file is created empty with mode 0666 less the umask, which the writer's own open
    keeps (mkstemp's 0600 would end up on the target).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temp_name(target.name, suffix))
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        yield tmp
        os.replace(tmp, target)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)  # first: the space it took is then free again
        full = disk_full(target, err)
        if full is not None:
            raise full from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(folder: Path | str) -> int:
    """Delete the temp files and folders (``TMP_PREFIX``) that killed runs left directly in
    `folder`; those of a process still running are spared. Returns how many were deleted; a
    missing folder has none."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [
        entry
        for entry in folder.iterdir()
        if entry.name.startswith(TMP_PREFIX) and not _writer_running(entry.name)
    ]
    for entry in stale:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)  # a temp folder written as a unit
        else:
            entry.unlink(missing_ok=True)  # missing: another cleaner was first
    if stale:
        log.warning(
            "%s: removed %d temp files left by an interrupted run: %s",
            folder,
            len(stale),
            ", ".join(sorted(e.name for e in stale)[:3]),
        )
    return len(stale)


def _writer_running(name: str) -> bool:
    """Whether the process that made the temp file `name` is running (not this one: a stage
    cleans before it writes, so a temp with its pid is a dead namesake's, e.g. in a container
    that reuses pids). A name without a pid counts as not running."""
    match = _OWNER.match(name)
    if match is None or int(match[1]) == os.getpid():
        return False
    try:
        os.kill(int(match[1]), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OverflowError:
        return False  # not a pid at all
    return True


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
