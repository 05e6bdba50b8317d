"""The download's worker processes: each fetches its images on its own event loop and HTTP
client, then validates, shrinks and writes them (``lib.acquire.store``), so a body never leaves
the process that received it.

In: the jobs, each an image on disk to check or a record to fetch into a folder; the fetch
settings of one worker (its share of the total and per-host limits), ``ImageLimits``, the
competition folder. Out: one outcome per job, yielded in the main process as the workers send
them, and the span from the first request to the last image stored.

The main process hands the jobs out a chunk at a time, when a worker asks for more, so a
faster worker takes more and no worker holds the whole list. A worker that finds an image on
disk broken fetches it again itself; so it does when the image's source changed since it was
copied: a file's size or mtime, always; a URL's ETag, Last-Modified or Content-Length (a HEAD
request), only when asked (``refetch``). Each outcome of an image on disk carries its source's
version (``Outcome.source``: the URL and ``lib.acquire.fetch``'s validator), for the next
run. ``Workers.close()`` (or the main process ending, even by kill -9) makes every worker drop
its requests in flight and exit; an image being written is never cut, as writes are atomic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from lib.acquire.fetch import Fetcher, fetching
from lib.acquire.oskit import batch_scheduling, keep_freed_memory
from lib.acquire.resize import ImageLimits
from lib.acquire.store import EXISTING_BAD, EXISTING_RESIZED, check_existing, store_decoded
from lib.common.errors import UserError
from lib.common.pools import set_up_decode_worker

CHECK, FETCH = "check", "fetch"  # job kinds: an image on disk, a record to download
# Outcome kinds. A broken image on disk gives REPLACED, one whose source changed REFRESHED,
# then the outcome of its fetch.
DOWNLOADED, FAILED, EXISTING, REPLACED = "downloaded", "failed", "existing", "replaced"
REFRESHED = "refreshed"
Source = tuple[str, str]  # (url, validator): where an image on disk came from, which version
FLUSH_S = 0.1  # a worker sends its outcomes at least this often (the progress bar's pace)


@dataclass(frozen=True)
class Job:
    kind: str  # CHECK or FETCH
    urls: tuple[str, ...]  # the record's URLs, tried in order
    stem: str  # the image's file name without extension (its id)
    path: str  # CHECK: the image's path; FETCH: its folder
    recorded: Source | None = None  # CHECK: the source the image was copied from, if known


@dataclass(frozen=True)
class Outcome:
    """What became of job ``index``: DOWNLOADED with ``nbytes``, ``written``, ``resized``,
    ``later_url`` and ``digest`` (``lib.common.decoded``: of the bytes written, which decoded
    in full); FAILED with ``reasons``; EXISTING with ``resized``; REPLACED; REFRESHED.
    DOWNLOADED and EXISTING carry the image's ``source`` when its version is known."""

    index: int
    kind: str
    reasons: tuple[str, ...] = ()
    nbytes: int = 0
    written: int = 0
    resized: bool = False
    later_url: bool = False
    source: Source | None = None
    digest: bytes = b""


class WorkerFailed(RuntimeError):
    """A worker process raised or died (killed, or crashed in a decoder)."""


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` whole shares as even as can be, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (k < extra) for k in range(parts)]


class Workers:
    """One worker process per entry of ``fetch_options`` (``lib.acquire.fetch.fetching``'s
    keywords for that worker), started by the constructor; ``run(count, job_of)`` yields each
    job's outcome as it arrives and then sets ``fetching_s``; ``close()`` stops the workers
    still running (an interrupt, an error) and waits for them."""

    def __init__(
        self,
        *,
        fetch_options: Sequence[dict[str, Any]],
        limits: ImageLimits,
        competition_dir: Path,
        context: BaseContext,
        refetch: bool = False,
    ) -> None:
        self.fetching_s = 0.0  # the first request of any worker to the last image stored
        self._live: dict[Connection, BaseProcess] = {}
        try:
            for options in fetch_options:
                ours, theirs = context.Pipe()
                # typeshed's BaseContext lacks Process, which every real context has
                process = context.Process(  # type: ignore[attr-defined]
                    target=worker_main,
                    name="download-worker",
                    args=(theirs, options, limits, str(competition_dir), refetch),
                )
                process.start()
                theirs.close()  # the worker holds the only other end: EOF there = we are gone
                self._live[ours] = process
        except BaseException:
            self.close()
            raise
        self.pids = sorted(process.pid for process in self._live.values())

    def run(self, count: int, job_of: Callable[[int], Job]) -> Iterator[Outcome]:
        """Jobs ``0 .. count - 1`` (``job_of`` makes each when it is handed out)."""
        pending = iter(range(count))
        spans: list[tuple[float, float]] = []
        while self._live:
            sentinels = {process.sentinel: c for c, process in self._live.items()}
            ready = wait([*self._live, *sentinels])
            for connection in {sentinels.get(item, item) for item in ready}:
                outcomes, wanted, span = self._receive(connection)
                yield from outcomes
                if wanted:
                    # range first: zip stops at it before taking one job too many
                    taken = [index for _, index in zip(range(wanted), pending, strict=False)]
                    connection.send([(index, job_of(index)) for index in taken])
                if span is not None:  # its last message: it has exited or is about to
                    if span:  # empty: it fetched nothing, so it has no span
                        spans.append(span)
                    self._live.pop(connection).join()
                    connection.close()
        if spans:
            self.fetching_s = max(end for _, end in spans) - min(start for start, _ in spans)

    def _receive(self, connection: Connection) -> tuple[list[Outcome], int, Any]:
        process = self._live[connection]
        try:
            outcomes, wanted, span, error = connection.recv()
        except EOFError:
            process.join()
            raise WorkerFailed(
                f"download worker {process.pid} exited with code "
                f"{process.exitcode} before finishing its images"
            ) from None
        if isinstance(error, UserError):
            raise error
        if error is not None:
            raise WorkerFailed(f"download worker {process.pid} failed:\n{error}")
        return outcomes, wanted, span

    def close(self) -> None:
        """Tell every worker still running to stop, wait for it (an image being written is
        finished, requests in flight are dropped), close our ends."""
        for connection in self._live:
            with contextlib.suppress(OSError):  # already gone
                connection.send(None)
        for connection, process in self._live.items():
            process.join(timeout=10)
            if process.is_alive():  # stuck (a decoder in a loop): nothing of it to save
                process.kill()
                process.join()
            connection.close()
        self._live.clear()


# ---------------------------------------------------------------------------------------------
# the worker process


def worker_main(
    connection: Connection,
    fetch_options: dict[str, Any],
    limits: ImageLimits,
    competition_dir: str,
    refetch: bool = False,
) -> None:
    """A worker's whole life: set up, serve jobs until none are left or we are told to stop."""
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    set_up_decode_worker()
    keep_freed_memory()  # every image's decode buffers reused, not faulted in again
    # PIL only warns between 1x and 2x the limit; here anything over the limit is rejected
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        with batch_scheduling():
            asyncio.run(serve(connection, fetch_options, limits, Path(competition_dir), refetch))
    except (BrokenPipeError, EOFError):  # the main process is gone: nothing to report to
        os._exit(1)
    except UserError as err:  # a full disk: the main process raises it as it is, one line
        try:
            connection.send(_message(error=err))
        finally:
            os._exit(1)
    except BaseException:  # noqa: BLE001 - told to the main process, which raises it
        try:
            connection.send(_message(error=traceback.format_exc()))
        finally:
            os._exit(1)


async def serve(
    connection: Connection,
    fetch_options: dict[str, Any],
    limits: ImageLimits,
    competition_dir: Path,
    refetch: bool = False,
) -> None:
    """Take jobs from ``connection`` and send back their outcomes, ``concurrency`` at a time.
    Returns when the main process has no more jobs, or says stop (``None``) or is gone."""
    feed = _Feed(connection, want=fetch_options["concurrency"])
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_reader(connection.fileno(), feed.receive, main)
    flusher = asyncio.ensure_future(feed.flush_every(FLUSH_S))
    try:
        async with fetching(competition_dir, **fetch_options) as fetch:
            await asyncio.gather(
                *[_run(feed, fetch, limits, refetch) for _ in range(fetch_options["concurrency"])]
            )
    except asyncio.CancelledError:
        if feed.stopped:
            return  # told to stop: exit without a word
        raise
    finally:
        flusher.cancel()
        asyncio.get_running_loop().remove_reader(connection.fileno())
    feed.finish()


async def _run(feed: _Feed, fetch: Fetcher, limits: ImageLimits, refetch: bool) -> None:
    while (item := await feed.next()) is not None:
        index, job = item
        if job.kind == CHECK:
            changed, source = await _source_changed(job, fetch, refetch)
            if changed:  # the copy is out of date: fetched again from its source
                Path(job.path).unlink(missing_ok=True)
                feed.emit(Outcome(index, REFRESHED))
            else:
                result = check_existing(job.path, limits)
                if result != EXISTING_BAD:
                    feed.emit(
                        Outcome(index, EXISTING, resized=result == EXISTING_RESIZED, source=source)
                    )
                    continue
                feed.emit(Outcome(index, REPLACED))
            job = Job(FETCH, job.urls, job.stem, str(Path(job.path).parent))
        feed.emit(await _fetch_image(index, job, fetch, limits, feed))


async def _source_changed(job: Job, fetch: Fetcher, refetch: bool) -> tuple[bool, Source | None]:
    """Whether the source of the image on disk changed since it was copied, and its version
    now. A file source is always looked at (a stat); a URL only with ``refetch``. An image
    whose version was never recorded (copied before they were) keeps its copy, and the
    version of its first URL that gives one is recorded."""
    if job.recorded is not None and job.recorded[0] in job.urls:
        url, recorded = job.recorded
        if not refetch and urlsplit(url).scheme.lower() != "file":
            return False, job.recorded
        current = await fetch.current_validator(url)
        if current is None:  # cannot be told (a failed request): the copy stays
            return False, job.recorded
        return current != recorded, (url, current)
    for url in job.urls:
        if refetch or urlsplit(url).scheme.lower() == "file":
            current = await fetch.current_validator(url)
            if current is not None:
                return False, (url, current)
    return False, None


async def _fetch_image(
    index: int, job: Job, fetch: Fetcher, limits: ImageLimits, feed: _Feed
) -> Outcome:
    """Try the job's URLs in order until one gives a valid image."""
    reasons: list[str] = []
    for position, url in enumerate(job.urls):
        feed.started()
        body, reason = await fetch(url)
        if body is not None:
            reason, written, resized, digest = store_decoded(body, job.path, job.stem, limits)
            validator = fetch.validator(url)
            if reason is None:
                feed.stored()
                return Outcome(
                    index,
                    DOWNLOADED,
                    nbytes=len(body),
                    written=written,
                    resized=resized,
                    later_url=position > 0,
                    source=(url, validator) if validator else None,
                    digest=digest,
                )
        assert reason is not None
        reasons.append(reason)
    return Outcome(index, FAILED, reasons=tuple(reasons))


class _Feed:
    """A worker's side of the pipe: jobs come in chunks when asked for, outcomes go out in
    batches. Out: ``_message``; in: a list of ``(index, Job)`` (empty: no more) or None
    (stop)."""

    def __init__(self, connection: Connection, want: int) -> None:
        self._connection = connection
        self._want = want  # jobs asked for at a time: one per concurrent fetch
        self._jobs: collections.deque[tuple[int, Job]] = collections.deque()
        self._outcomes: list[Outcome] = []
        self._asked = False
        self._ended = False  # the main process has no more jobs
        self.stopped = False
        self._arrived = asyncio.Event()
        self._first: float | None = None
        self._last = 0.0

    def receive(self, main: asyncio.Task) -> None:
        """The pipe is readable: jobs, no more jobs, stop, or the main process's end."""
        try:
            message = self._connection.recv()
        except EOFError:
            message = None
        if message is None:
            self.stopped = True
            asyncio.get_running_loop().remove_reader(self._connection.fileno())
            main.cancel()
            return
        self._asked = False
        self._ended = not message
        self._jobs.extend(message)
        self._arrived.set()

    async def next(self) -> tuple[int, Job] | None:
        while not self._jobs:
            if self._ended:
                return None
            self._ask()
            self._arrived.clear()
            await self._arrived.wait()
        item = self._jobs.popleft()
        if len(self._jobs) < self._want:
            self._ask()
        return item

    def _ask(self) -> None:
        if not self._asked and not self._ended:
            self._asked = True
            self._send(self._want)

    def emit(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)

    def started(self) -> None:
        if self._first is None:
            self._first = time.perf_counter()

    def stored(self) -> None:
        self._last = time.perf_counter()

    async def flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self._outcomes:
                self._send(0)

    def finish(self) -> None:
        """The last message: the span from the first request to the last image stored, empty
        when this worker requested nothing (no jobs, or only images on disk that were fine)."""
        if self._first is None:
            self._send(0, span=())
        else:
            self._send(0, span=(self._first, max(self._first, self._last)))

    def _send(self, wanted: int, span: tuple[float, ...] | None = None) -> None:
        outcomes, self._outcomes = self._outcomes, []
        self._connection.send(_message(outcomes, wanted, span))


def _message(
    outcomes: Sequence[Outcome] = (),
    wanted: int = 0,
    span: tuple[float, ...] | None = None,
    error: str | UserError | None = None,
) -> tuple:
    """A worker's one message shape, as ``Workers._receive`` unpacks it; ``error``: a
    traceback, or a UserError (a full disk) to raise as it is."""
    return list(outcomes), wanted, span, error
