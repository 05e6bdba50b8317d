"""The operating-system tuning the download uses, in one place (no other stage imports it, so
tuning it re-runs only the download).

Each function changes one thing below Python, says why in a line, and falls back to doing
nothing where the system lacks it (not Linux, not glibc, a sandbox that refuses), so its caller
works the same everywhere, only slower.

- ``batch_scheduling``: SCHED_BATCH for the download's workers.
- ``keep_freed_memory``: glibc's ``mallopt`` through ctypes, for the image decoding workers.
- ``open_unnamed_file`` / ``link_unnamed_file``: ``O_TMPFILE``, then ``linkat`` through
  /proc, for ``lib.acquire.store.write_bytes``.
- ``stderr_muted``: file descriptor 2 pointed at /dev/null, around OpenCV's JPEG decoder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def batch_scheduling() -> Iterator[None]:
    """This thread under Linux's SCHED_BATCH for the block, then back to its policy.

    Why: while every core decodes, a worker woken by network data then waits for the running
    decoder's time slice instead of preempting it, so the event loops wake less often and
    handle more events per wake-up. A thread under another policy (real-time, idle) is left as
    it is."""
    batch = getattr(os, "SCHED_BATCH", None)
    switched = False
    try:
        if batch is not None and os.sched_getscheduler(0) == os.SCHED_OTHER:
            os.sched_setscheduler(0, batch, os.sched_param(0))
            switched = True
    except OSError:  # refused (e.g. a sandbox's seccomp filter): the caller works without
        pass
    try:
        yield
    finally:
        if switched:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # smaller blocks come from the heap and are reused
TRIM_THRESHOLD_BYTES = 64 << 20  # free heap kept by the process before giving it back


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks below 32 MiB in the heap, up to 64 MiB of them.

    Why: decoding one photo allocates and frees buffers of a few hundred KB to a few MB; by
    default glibc maps the larger ones separately or gives them back to the kernel, so every
    image faults its pages in again. False where this is not glibc (nothing changed)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


_O_TMPFILE = getattr(os, "O_TMPFILE", None)
# O_TMPFILE unsupported by the file system (or the kernel: EISDIR before Linux 3.11)
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)


def open_unnamed_file(folder: Path) -> int | None:
    """A new file in ``folder`` that no name points to yet (``O_TMPFILE``), open for writing,
    for ``link_unnamed_file``; None where that cannot be done (not Linux, no /proc, a file
    system without it).

    Why: written, then linked under its name, a file appears whole with one change to its
    folder (a temp file costs a create and a rename), and a killed writer leaves nothing."""
    if _O_TMPFILE is None or _proc_dir() is None:
        return None
    try:
        return os.open(folder, _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as err:
        if err.errno in _NO_TMPFILE:
            return None
        raise  # a missing folder, no permission...: as a named file would fail


def link_unnamed_file(fd: int, path: Path) -> None:
    """Give the unnamed file ``fd`` (``open_unnamed_file``) the name ``path``; raises
    FileExistsError when ``path`` exists.

    Why through /proc: ``linkat(AT_SYMLINK_FOLLOW)`` of /proc/self/fd/N is how Linux names an
    O_TMPFILE file without the CAP_DAC_READ_SEARCH that ``AT_EMPTY_PATH`` needs. os.link calls
    linkat, not link (which would link the /proc symlink itself), when given a dir fd."""
    proc = _proc_dir()
    assert proc is not None, "open_unnamed_file returns None without /proc"
    os.link(f"self/fd/{fd}", path, src_dir_fd=proc, follow_symlinks=True)


@functools.cache
def _proc_dir() -> int | None:
    """A handle on /proc (``self`` in it is whichever process looks, so one per process is
    right even when inherited by a fork), or None without /proc."""
    try:
        return os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


_devnull: int | None = None  # opened once per process, on first use


@contextlib.contextmanager
def stderr_muted() -> Iterator[None]:
    """File descriptor 2 points to /dev/null inside the block.

    Why the descriptor, not ``sys.stderr``: C libraries (libjpeg's "Corrupt JPEG data: ..."
    warnings) write to it directly, and every broken download would print one."""
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (closed by whoever started us): nothing to mute
        yield
        return
    os.dup2(_devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
