"""Worker processes that are safe to start from a process that already runs threads.

The stages start pools after tqdm's monitor thread, aiohttp's resolver, torch's or OpenCV's
thread pools may be running; forking such a process can copy a held lock and hang a worker
forever. "forkserver" forks children from a small clean server process instead.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.pool import Pool


def context() -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context("forkserver")


def worker_count(workers: int = 0) -> int:
    """`workers`, or when 0 the cores this process may run on (not the host's: containers)."""
    if workers:
        return workers
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def one_thread_per_worker() -> None:
    """Run in each worker: there is already one process per core, so OpenCV's own thread pool
    would oversubscribe the cores."""
    import cv2  # here, not at the top: only workers that decode pay for the import

    cv2.setNumThreads(1)


def process_pool(workers: int = 0, initializer: Callable[[], None] | None = None) -> Pool:
    return context().Pool(worker_count(workers), initializer=initializer)
