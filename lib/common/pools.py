"""Worker processes that are safe to start from a process that already runs threads.

The stages start pools after tqdm's monitor thread, aiohttp's resolver, torch's or OpenCV's
thread pools may be running; forking such a process can copy a held lock and hang a worker
forever. "forkserver" forks children from a small clean server process instead, one per
process, which imports the decoders' libraries first (``context``), so no child has to.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.pool import Pool

# What the forkserver imports before it forks any worker: the decoders' libraries (numpy, PIL,
# OpenCV), so that no worker imports them itself while the run is on (and OpenCV's and numpy's
# OpenBLAS start no thread in each worker).
DECODER_MODULES = ("lib.acquire.resize",)
# this module first, for the filter below; then every module any caller asked for so far
_preload = [__name__, *DECODER_MODULES]

# multiprocessing runs a `python -m` program's main module again in every worker, and runpy
# warns when it finds it imported already: the forkserver imports it on purpose when a caller
# asks (the download stage preloads itself). Set on import, so in the forkserver too, whose
# workers inherit it.
warnings.filterwarnings(
    "ignore", r"'.+' found in sys\.modules after import of package", RuntimeWarning, "runpy"
)


def context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """The "forkserver" context. When a pool starts the forkserver (one per process), it first
    imports ``DECODER_MODULES`` and every module any call so far asked for in ``preload``;
    once it runs, nothing changes."""
    _preload.extend(name for name in preload if name not in _preload)
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(list(_preload))
    return forkserver


def worker_count(workers: int = 0) -> int:
    """`workers`, or when 0 the cores this process may run on (not the host's: containers)."""
    if workers:
        return workers
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_up_decode_worker() -> None:
    """Run in each worker that decodes images: one OpenCV thread (there is already one process
    per core, so OpenCV's own thread pool would oversubscribe the cores)."""
    import cv2  # here, not at the top: only workers that decode pay for the import

    cv2.setNumThreads(1)


def process_pool(workers: int = 0, initializer: Callable[[], None] | None = None) -> Pool:
    return context().Pool(worker_count(workers), initializer=initializer)
