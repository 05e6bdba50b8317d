"""Download every image of a competition into an ImageFolder tree.

In: ``{split: [ImageRecord, ...]}`` (``lib.acquire.competition``), the competition folder (the
only folder ``file:`` URLs may read from), the images folder, the folder for images no longer
listed, ``DownloadSettings`` and, to retry an earlier run's failures only, the pairs
``read_failures`` returns (ids as text). Out: the images under ``images_dir/<split>/<label>/``
(labelled splits) or ``images_dir/test/``, each written atomically, and a ``DownloadResult``:
the report (counts per outcome, split and failure reason) and one failure row per image not on
disk.

A re-run first moves the images already there in line with the lists
(``lib.acquire.reconcile``), checks them (``lib.acquire.store``) and fetches only what is
missing. A fixed pool of coroutines fetches (``lib.acquire.fetch``); worker processes, one per
core, validate, shrink and write (``lib.acquire.store``), so decoding never blocks the event
loop. A failed image is a value, not an exception. SIGINT and SIGTERM stop the run cleanly:
what was written is whole and kept, and ``DownloadInterrupted`` is raised.

docs/download.md describes the layout, the re-runs, the report's fields and the failure reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lib.acquire.competition import (
    LABELLED_SPLITS,
    SPLITS,
    ImageRecord,
    label_dir_name,
    label_width,
)
from lib.acquire.fetch import Fetcher, open_client
from lib.acquire.reconcile import default_removed_dir, image_stem, reconcile
from lib.acquire.resize import ImageLimits
from lib.acquire.store import (
    EXISTING_BAD,
    EXISTING_RESIZED,
    StoreWorkers,
)
from lib.common import pools
from lib.common.errors import UserError
from lib.common.fileio import TMP_PREFIX, write_json, write_text
from lib.common.ids import ALLOWED as ALLOWED_IDS
from lib.common.ids import id_order, is_id_text
from lib.common.oskit import batch_scheduling
from lib.common.params import RULES

logger = logging.getLogger(__name__)

DOWNLOADED = "downloaded"
SKIPPED_EXISTING = "skipped_existing"
FAILED = "failed"
NOT_ATTEMPTED = "not_attempted"  # missing, but not in the failures list being retried
STATUSES = (DOWNLOADED, SKIPPED_EXISTING, FAILED, NOT_ATTEMPTED)
FAILURE_COLUMNS = ("split", "image_id", "url", "reason")


@dataclass
class DownloadSettings:
    """Knobs of the downloader (params.yaml's `download` section, where their defaults and
    meaning live), validated on construction and again on entry."""

    concurrency: int  # requests (and images) in flight in total
    per_host: int  # simultaneous requests per host
    timeout_s: float  # one request, from holding a slot to its last byte
    connect_timeout_s: float  # TCP (and TLS) connect
    read_timeout_s: float  # the longest silence while reading a response
    dns_cache_s: float  # how long a resolved host name is reused
    retries: int  # extra attempts per URL for retryable failures
    backoff_s: float  # base of the exponential backoff, seconds (with jitter)
    max_redirects: int  # redirects followed per request; 0 = none
    min_side: int  # images smaller than this on either side are placeholders
    max_bytes: int  # larger bodies are rejected (reading stops at the cap)
    max_pixels: int  # width * height above this is a decompression bomb
    max_side: int | None  # shrink larger images to this longer side; None keeps all
    jpeg_quality: int  # JPEG quality of shrunk images
    workers: int  # processes that validate, shrink and write; 0 = one per CPU core

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> DownloadSettings:
        """From params.yaml's contents (its `download` section), with `overrides`."""
        section = params["download"]
        return cls(**{f.name: section[f.name] for f in fields(cls)} | overrides)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field, its value and what is allowed: the rules of the
        ``download.*`` params (``lib.common.params``): a setting is allowed exactly when its
        param is."""
        for item in fields(self):
            value = getattr(self, item.name)
            allowed = RULES[f"download.{item.name}"](value)
            if allowed is not None:
                raise ValueError(f"download setting {item.name}={value!r}; expected {allowed}")

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(min_side=self.min_side, max_pixels=self.max_pixels,
                           max_side=self.max_side, quality=self.jpeg_quality)


@dataclass
class DownloadResult:
    report: dict[str, Any]
    failures: list[dict[str, Any]]


class DownloadInterrupted(Exception):
    """SIGINT or SIGTERM stopped the download; what was written is complete and kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"download interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class FailuresFileError(UserError, ValueError):
    """The failures CSV to retry is missing or malformed."""


def download_competition(
    records_by_split: dict[str, list[ImageRecord]],
    *,
    competition_dir: Path,
    images_dir: Path,
    settings: DownloadSettings,
    retry_only: set[tuple[str, int | str]] | None = None,
    removed_dir: Path | None = None,
) -> DownloadResult:
    """Fetch every record's image into ``images_dir``; see the module docstring.
    ``removed_dir`` None: ``<images_dir>_removed`` beside it."""
    settings.validate()
    if retry_only is not None:  # ids compare as text: 5 and "5" are one image
        retry_only = {(split, str(image_id)) for split, image_id in retry_only}
    unknown = sorted(set(records_by_split) - set(SPLITS))
    if unknown:
        raise ValueError(f"records_by_split has splits {unknown}; allowed: {', '.join(SPLITS)}")
    started = time.perf_counter()
    images_dir = Path(images_dir)
    tally = _Tally(list(records_by_split))
    total = sum(len(records) for records in records_by_split.values())
    try:
        with _sigterm_raises():
            folder_of = _folder_namer(records_by_split, images_dir)
            moves = reconcile(records_by_split, images_dir,
                              removed_dir or default_removed_dir(images_dir), folder_of)
            tally.extra.update(moved=moves.moved, set_aside=moves.set_aside,
                               restored=moves.restored)
            plan = _plan(records_by_split, folder_of, tally, retry_only)
            with tqdm(total=total, initial=tally.done, unit="img", desc="download",
                      disable=None, smoothing=0.1) as bar:
                if plan.existing or plan.jobs:
                    _fetch_and_store(plan, Path(competition_dir), settings, tally, bar)
    except KeyboardInterrupt:  # Ctrl-C outside the event loop, which handles its own
        raise DownloadInterrupted(signal.SIGINT) from None
    report = tally.report(time.perf_counter() - started)
    _log_summary(report)
    return DownloadResult(report=report, failures=tally.failure_rows())


def write_report(
    report: dict[str, Any],
    failures: list[dict[str, Any]],
    *,
    report_path: Path,
    failures_path: Path,
) -> None:
    """Write the report as JSON (indent 2, sorted keys) and the failures as CSV, atomically."""
    write_json(report_path, report)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FAILURE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(failures)
    write_text(failures_path, buffer.getvalue())


def read_failures(path: Path) -> set[tuple[str, str]]:
    """The ``(split, image id text)`` pairs of a failures CSV written by ``write_report``."""
    path = Path(path)
    if not path.is_file():
        raise FailuresFileError(
            f"{path}: file not found; retrying failures needs the failures list of an earlier "
            f"run (under dvc repro, that out must be declared persist: true)")
    wanted: set[tuple[str, int]] = set()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in ("split", "image_id") if name not in (reader.fieldnames or ())]
        if missing:
            raise FailuresFileError(f"{path}: no column {missing[0]!r}; expected the header "
                                    f"{','.join(FAILURE_COLUMNS)}")
        for row in reader:
            split, image_id = row["split"], row["image_id"] or ""
            if split not in SPLITS or not is_id_text(image_id):
                raise FailuresFileError(
                    f"{path}: line {reader.line_num}: split {split!r}, image_id {image_id!r}; "
                    f"expected one of {', '.join(SPLITS)} and {ALLOWED_IDS}")
            wanted.add((split, image_id))
    return wanted


# ---------------------------------------------------------------------------------------------
# counting: the report and the failure rows, nothing else per image


class _Tally:
    def __init__(self, splits: list[str]) -> None:
        self.per_split = {split: Counter() for split in splits}
        self.reasons: Counter[str] = Counter()
        self.failures: list[tuple[str, int | str, str, str]] = []
        self.extra: Counter[str] = Counter()  # bytes, bytes_written, resized, ...
        self.fetching_s = 0.0  # first request to last image stored

    def count(self, split: str, status: str) -> None:
        self.per_split[split][status] += 1

    @property
    def done(self) -> int:
        return sum(counts.total() for counts in self.per_split.values())

    def downloaded(self, split: str, nbytes: int, written: int, resized: bool,
                   later_url: bool) -> None:
        self.count(split, DOWNLOADED)
        self.extra.update(bytes=nbytes, bytes_written=written, resized=int(resized),
                          from_later_url=int(later_url))

    def failed(self, record: ImageRecord, reasons: list[str]) -> None:
        self.count(record.split, FAILED)
        self.reasons[reasons[-1]] += 1
        self.failures.append((record.split, record.image_id, record.urls[-1], ";".join(reasons)))

    def not_attempted(self, record: ImageRecord) -> None:
        self.count(record.split, NOT_ATTEMPTED)
        self.failures.append((record.split, record.image_id, record.urls[0], NOT_ATTEMPTED))

    def report(self, elapsed_s: float) -> dict[str, Any]:
        """Counts per outcome, per split and per failure reason, plus bytes and throughput."""
        per_split = {split: {"total": sum(counts.values()),
                             **{status: counts[status] for status in STATUSES}}
                     for split, counts in self.per_split.items()}
        totals = {status: sum(c[status] for c in per_split.values()) for status in STATUSES}
        extras = ("bytes", "bytes_written", "resized", "from_later_url", "existing_resized",
                  "existing_replaced", "moved", "set_aside", "restored")
        return {
            "total": sum(c["total"] for c in per_split.values()),
            **totals,
            **{name: self.extra[name] for name in extras},
            "elapsed_s": round(elapsed_s, 3),
            "images_per_s": round(totals[DOWNLOADED] / elapsed_s, 2) if elapsed_s > 0 else 0.0,
            "fetching_s": round(self.fetching_s, 3),
            "per_split": per_split,
            "failure_reasons": dict(sorted(self.reasons.items())),
        }

    def failure_rows(self) -> list[dict[str, Any]]:
        """One row per image not on disk, in split then image_id order."""
        rows = sorted(self.failures, key=lambda row: (_split_rank(row[0]), id_order(row[1])))
        return [dict(zip(FAILURE_COLUMNS, row, strict=True)) for row in rows]


# ---------------------------------------------------------------------------------------------
# planning: destinations, images already there, leftovers


@dataclass
class _Plan:
    jobs: list[ImageRecord]  # to fetch
    existing: list[tuple[ImageRecord, str]]  # on disk, to check from the header
    folder_of: Callable[[ImageRecord], Path]


def _plan(
    records_by_split: dict[str, list[ImageRecord]],
    folder_of: Callable[[ImageRecord], Path],
    tally: _Tally,
    retry_only: set[tuple[str, str]] | None,
) -> _Plan:
    """Sort every record into: to fetch, on disk (to check, or skipped), or not attempted."""
    files: dict[Path, dict[str, str]] = {}
    plan = _Plan(jobs=[], existing=[], folder_of=folder_of)
    for split in sorted(records_by_split, key=_split_rank):
        for record in records_by_split[split]:
            folder = folder_of(record)
            if folder not in files:
                files[folder] = _prepare_dir(folder)
            name = files[folder].get(str(record.image_id))
            if name is not None and retry_only is None:
                plan.existing.append((record, str(folder / name)))
            elif name is not None:
                tally.count(split, SKIPPED_EXISTING)  # retrying failures: trusted unchecked
            elif retry_only is None or (split, str(record.image_id)) in retry_only:
                plan.jobs.append(record)
            else:
                tally.not_attempted(record)
    if retry_only is not None:
        logger.info("retrying the listed failures: %d images to fetch, %d missing but not "
                    "listed (not attempted)", len(plan.jobs), sum(
                        counts[NOT_ATTEMPTED] for counts in tally.per_split.values()))
    return plan


def _folder_namer(
    records_by_split: dict[str, list[ImageRecord]], images_dir: Path
) -> Callable[[ImageRecord], Path]:
    """The folder of a record's image: ``<split>/<label>`` for labelled records, ``<split>``
    else; one label width for train and validation, one Path per folder."""
    labelled = (r for split in LABELLED_SPLITS for r in records_by_split.get(split, ()))
    width = label_width(labelled)  # one width for train and validation: same folder names

    @functools.cache
    def folder(split: str, label: int | None) -> Path:
        if label is None:
            return images_dir / split
        return images_dir / split / label_dir_name(label, width)

    return lambda record: folder(record.split, record.label)


def _prepare_dir(folder: Path) -> dict[str, str]:
    """Create ``folder``, delete leftover temp files; ``{image id: file name}`` of the images
    there (files of other names are not the download's: left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            stem = image_stem(entry.name)  # any stored extension counts
            if entry.name.startswith(TMP_PREFIX):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
            elif stem is not None and entry.is_file():
                if stem in names:  # kill -9 between shrinking x.png to x.jpg and deleting x.png
                    keep, drop = sorted((names[stem], entry.name),
                                        key=lambda name: not name.endswith(".jpg"))
                    (folder / drop).unlink()
                    names[stem] = keep
                else:
                    names[stem] = entry.name
    if removed:
        logger.info("%s: removed %d leftover temp files", folder, removed)
    return names


# ---------------------------------------------------------------------------------------------
# running: worker processes, images on disk, then the downloads


def _fetch_and_store(
    plan: _Plan, competition_dir: Path, settings: DownloadSettings, tally: _Tally, bar: tqdm
) -> None:
    # Processes, not threads: PIL parses headers and runs parts of its decoders in Python with
    # the GIL held, which would stall the event loop and cap decoding at one core. Started here,
    # before the event loop, because the first start waits for the forkserver's imports, which
    # would stall every request in flight. "forkserver", not fork: this process already runs
    # threads (tqdm's monitor, later aiohttp's resolver), and forking them can deadlock.
    context = pools.context(preload=worker_preload())
    workers = StoreWorkers(count=pools.worker_count(settings.workers), limits=settings.limits,
                           context=context)
    try:
        with batch_scheduling():
            asyncio.run(_check_and_download(plan, competition_dir, settings, workers, tally,
                                            bar))
    finally:
        workers.close()  # each finishes the images it was sent, then exits


async def _check_and_download(
    plan: _Plan,
    competition_dir: Path,
    settings: DownloadSettings,
    workers: StoreWorkers,
    tally: _Tally,
    bar: tqdm,
) -> None:
    with _signals_cancel_this_task():
        jobs = plan.jobs + await _check_existing_images(plan.existing, workers, tally, bar)
        plan.existing = []
        # Lists are often grouped by source site; a fixed shuffle spreads the hosts so the
        # per-host limit does not leave most workers queueing behind one host.
        random.Random(0).shuffle(jobs)
        await _download_all(jobs, plan.folder_of, competition_dir, settings, workers.store,
                            tally, bar)


def worker_preload() -> list[str]:
    """What the forkserver imports once, before it forks the workers: this module (and so
    lib.acquire.store, all a worker runs) and the main module. multiprocessing makes every worker
    import the main module again (for ``python -m stages.download``: aiohttp, tqdm, yaml...);
    with its imports already loaded, that is only the module's body."""
    main_spec = getattr(sys.modules["__main__"], "__spec__", None)
    main_name = getattr(main_spec, "name", None)  # None when run as a script
    return [*([main_name] if main_name else []), __name__]


async def _check_existing_images(
    existing: list[tuple[ImageRecord, str]], workers: StoreWorkers, tally: _Tally, bar: tqdm
) -> list[ImageRecord]:
    """Check the images on disk in the workers; the broken ones (deleted) come back to fetch."""
    refetch: list[ImageRecord] = []
    pending = iter(existing)

    async def check() -> None:
        for record, path in pending:
            result = await workers.check_existing(path)
            if result == EXISTING_BAD:
                refetch.append(record)
                tally.extra["existing_replaced"] += 1
                continue
            tally.count(record.split, SKIPPED_EXISTING)
            tally.extra["existing_resized"] += int(result == EXISTING_RESIZED)
            bar.update()

    await _run_workers([check() for _ in range(min(len(existing), 4 * workers.count))])
    if refetch:
        logger.info("%d images on disk were broken or placeholders: deleted, to fetch again",
                    len(refetch))
    return refetch


async def _download_all(
    jobs: list[ImageRecord],
    folder_of: Callable[[ImageRecord], Path],
    competition_dir: Path,
    settings: DownloadSettings,
    store: Store,
    tally: _Tally,
    bar: tqdm,
) -> None:
    if not jobs:
        return
    async with fetching(settings, competition_dir) as fetch:
        pending = iter(jobs)  # shared by the workers; next() is atomic in one loop
        progress = functools.partial(_advance, bar, tally)
        workers = min(settings.concurrency, len(jobs))
        started = time.perf_counter()
        try:
            await _run_workers([_worker(pending, fetch, store, folder_of, tally, progress)
                                for _ in range(workers)])
        finally:
            tally.fetching_s = time.perf_counter() - started


@contextlib.asynccontextmanager
async def fetching(settings: DownloadSettings, competition_dir: Path) -> AsyncIterator[Fetch]:
    """``fetch(url) -> (body, reason)`` on one aiohttp client set up from ``settings``, open
    for the ``async with`` block (``lib.acquire.fetch``)."""
    client = open_client(
        concurrency=settings.concurrency, per_host=settings.per_host,
        timeout_s=settings.timeout_s, connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s, dns_cache_s=settings.dns_cache_s)
    async with client:
        yield Fetcher(client, competition_dir, retries=settings.retries,
                      backoff_s=settings.backoff_s, max_redirects=settings.max_redirects,
                      max_bytes=settings.max_bytes, per_host=settings.per_host).fetch


async def _run_workers(coroutines: list[Awaitable[None]]) -> None:
    """Await all workers; on the first error cancel the others and re-raise it unwrapped."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


Fetch = Callable[[str], Awaitable[tuple[bytes | None, str | None]]]
Store = Callable[[bytes, Path, str], Awaitable[tuple[str | None, int, bool]]]


async def _worker(
    pending: Iterator[ImageRecord],
    fetch: Fetch,
    store: Store,
    folder_of: Callable[[ImageRecord], Path],
    tally: _Tally,
    progress: Callable[[], None],
) -> None:
    # A fixed pool of workers, not one task per image: bounds memory (bodies in flight) and
    # the number of tasks for 200k-image competitions.
    for record in pending:
        await _fetch_image(record, fetch, store, folder_of(record), tally)
        progress()


async def _fetch_image(
    record: ImageRecord, fetch: Fetch, store: Store, folder: Path, tally: _Tally
) -> None:
    """Try the record's URLs in order until one gives a valid image."""
    reasons: list[str] = []
    for index, url in enumerate(record.urls):
        body, reason = await fetch(url)
        if body is not None:
            reason, written, resized = await store(body, folder, str(record.image_id))
            if reason is None:
                tally.downloaded(record.split, len(body), written, resized, index > 0)
                return
        assert reason is not None
        reasons.append(reason)
    tally.failed(record, reasons)


def _advance(bar: tqdm, tally: _Tally) -> None:
    bar.update()
    if tally.reasons.total() and bar.n % 64 == 0:  # the failure count beside the bar
        bar.set_postfix(failed=tally.reasons.total(), refresh=False)


# ---------------------------------------------------------------------------------------------
# stopping on SIGINT / SIGTERM


@contextmanager
def _signals_cancel_this_task() -> Iterator[None]:
    """In the event loop: SIGINT or SIGTERM cancels the running task, which then raises
    DownloadInterrupted once its cleanup (closing the client, cancelling workers) is done."""
    task = asyncio.current_task()
    if task is None or threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    signums = (signal.SIGINT, signal.SIGTERM)
    # remove_signal_handler puts back Python's defaults, not what was there (for SIGTERM,
    # _sigterm_raises's handler, which must still work while the workers shut down)
    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    except asyncio.CancelledError:
        if received:
            raise DownloadInterrupted(received[0]) from None
        raise
    finally:
        for signum in signums:
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous[signum])


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Outside the event loop: SIGTERM raises DownloadInterrupted, as Ctrl-C raises
    KeyboardInterrupt, so the worker pool is shut down instead of orphaned."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: object) -> None:
        raise DownloadInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# small helpers


def _split_rank(split: str) -> int:
    return SPLITS.index(split)  # download_competition accepts no other split


def _log_summary(report: dict[str, Any]) -> None:
    reasons = ", ".join(f"{reason} {n}" for reason, n in report["failure_reasons"].items())
    not_attempted = report[NOT_ATTEMPTED]
    logger.info(
        "download: %d images: %d downloaded, %d skipped (already there), %d failed%s%s; "
        "%.1f MB in %.1f s (%.1f images/s)",
        report["total"], report["downloaded"], report["skipped_existing"], report["failed"],
        f" ({reasons})" if reasons else "",
        f", {not_attempted} not attempted (not in the failures list)" if not_attempted else "",
        report["bytes"] / 1e6, report["elapsed_s"], report["images_per_s"],
    )
