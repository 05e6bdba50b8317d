"""Download every image of a competition into an ImageFolder tree.

In: ``{split: [ImageRecord, ...]}`` (``lib.acquire.records``), the competition folder (the
only folder ``file:`` URLs may read from), the images folder, the folder for images no longer
listed, ``DownloadSettings`` and, to retry an earlier run's failures only, the pairs
``read_failures`` returns (ids as text). Out: the images under ``images_dir/<split>/<label>/``
(labelled splits) or ``images_dir/test/``, each written atomically, and a ``DownloadResult``:
the report (counts per outcome, split and failure reason) and one failure row per image not on
disk.

A re-run first moves the images already there in line with the lists
(``lib.acquire.reconcile``; it stops instead when they lost most of a split or a class),
checks them (``lib.acquire.store``) and fetches only what is missing. Worker processes, one
per core, fetch, validate, shrink and write the images (``lib.acquire.fetch_workers``); this
process hands them out and counts the outcomes. A failed
image is a value, not an exception. SIGINT and SIGTERM stop the run cleanly: what was written
is whole and kept, and ``DownloadInterrupted`` is raised.

Each image's source version (``lib.acquire.fetch_workers``: a file's size and mtime, a URL's
validators) is kept in ``images_dir/.sources.tsv``, beside the images it describes, so a re-run
copies again a source file that changed, and with ``refetch`` a URL whose server reports
another version. The digest of every image written (decoded in full first) is added to
``images_dir/.decoded`` (``lib.common.decoded``), so the folds stage need not decode it again.

docs/download.md describes the layout, the re-runs, the report's fields and the failure reasons.
"""

from __future__ import annotations

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
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lib.acquire import fetch_workers
from lib.acquire.fetch_workers import CHECK, FETCH, Job, Outcome, Source, Workers, shares
from lib.acquire.reconcile import default_removed_dir, image_stem, reconcile
from lib.acquire.records import LABELLED_SPLITS, SPLITS, ImageRecord, label_dir_name, label_width
from lib.acquire.resize import ImageLimits
from lib.common import pools
from lib.common.decoded import add_decoded
from lib.common.errors import UserError
from lib.common.fileio import TMP_PREFIX, write_json, write_text
from lib.common.ids import ALLOWED as ALLOWED_IDS
from lib.common.ids import id_order, is_id_text
from lib.common.params import Config, boolean, integer, number, param, part
from lib.common.progress import progress

logger = logging.getLogger(__name__)

DOWNLOADED = "downloaded"
SKIPPED_EXISTING = "skipped_existing"
FAILED = "failed"
NOT_ATTEMPTED = "not_attempted"  # missing, but not in the failures list being retried
STATUSES = (DOWNLOADED, SKIPPED_EXISTING, FAILED, NOT_ATTEMPTED)
FAILURE_COLUMNS = ("split", "image_id", "url", "reason")
SOURCES_FILE = ".sources.tsv"  # in images_dir: split, image_id, url, validator of each image


def _max_side(value: Any) -> str | None:
    if value is None or integer(1)(value) is None:
        return None
    return "null (keep the originals) or an integer >= 1"


@dataclass
class DownloadSettings(Config):
    """Knobs of the downloader (params.yaml's `download` section, where their defaults and
    meaning live), validated on construction and again on entry. Speed only (how fast the
    images come, never which bytes are stored): concurrency, per_host, dns_cache_s, workers."""

    SECTION = "download"

    concurrency: int = param(integer(1), speed=True)  # requests (and images) in flight in total
    per_host: int = param(integer(1), speed=True)  # simultaneous requests per host
    # one request, from holding a slot to its last byte
    timeout_s: float = param(number(0, strict=True))
    connect_timeout_s: float = param(number(0, strict=True))  # TCP (and TLS) connect
    # the longest silence while reading a response
    read_timeout_s: float = param(number(0, strict=True))
    dns_cache_s: float = param(number(0), speed=True)  # how long a resolved host name is reused
    retries: int = param(integer(0))  # extra attempts per URL for retryable failures
    backoff_s: float = param(number(0))  # base of the exponential backoff, seconds (with jitter)
    max_redirects: int = param(integer(0))  # redirects followed per request; 0 = none
    min_side: int = param(integer(1))  # images smaller than this on either side are placeholders
    max_bytes: int = param(integer(1))  # larger bodies are rejected (reading stops at the cap)
    max_pixels: int = param(integer(1))  # width * height above this is a decompression bomb
    # shrink larger images to this longer side; None keeps all
    max_side: int | None = param(_max_side)
    jpeg_quality: int = param(integer(1, 100))  # JPEG quality of shrunk images
    # processes that fetch, validate, shrink and write; 0 = one per core
    workers: int = param(integer(0), speed=True)
    # ask each URL's server whether the image on disk is still current
    refetch: bool = param(boolean)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field, its value and what is allowed: the rules of the
        ``download.*`` params: a setting is allowed exactly when its param is."""
        rules = self.rules()
        for item in fields(self):
            value = getattr(self, item.name)
            allowed = rules[f"download.{item.name}"](value)
            if allowed is not None:
                raise ValueError(f"download setting {item.name}={value!r}; expected {allowed}")

    def fetch_options(self, *, concurrency: int, per_host: int) -> dict[str, Any]:
        """``lib.acquire.fetch.fetching``'s keywords, with these two limits (a worker's share)."""
        return dict(
            concurrency=concurrency,
            per_host=per_host,
            timeout_s=self.timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            dns_cache_s=self.dns_cache_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
            max_redirects=self.max_redirects,
            max_bytes=self.max_bytes,
        )

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(
            min_side=self.min_side,
            max_pixels=self.max_pixels,
            max_side=self.max_side,
            quality=self.jpeg_quality,
        )


@dataclass(frozen=True)
class DownloadConfig(Config):
    """The download stage's config: how the competition is read (its rules in RULES: the
    ensemble reads them too), whether to retry the last run's failures only, and the
    downloader's settings."""

    competition: str = param()
    competition_format: str = param()
    id_column: str = param()
    label_column: str = param()
    label_pattern: str = param()
    test_share: float = param()
    # true: fetch only the images data/download_failures.csv lists
    retry_failures: bool = param(boolean, key="download.retry_failures")
    settings: DownloadSettings = part(DownloadSettings)


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
    retry_only: Collection[tuple[str, int | str]] | None = None,
    removed_dir: Path | None = None,
    refuse_shrinking: bool = True,
) -> DownloadResult:
    """Fetch every record's image into ``images_dir``; see the module docstring.
    ``removed_dir`` None: ``<images_dir>_removed`` beside it. ``refuse_shrinking``: stop
    (``lib.acquire.reconcile.ShrunkError``) before anything moves when the lists name far
    fewer images, or fewer classes, than ``images_dir`` holds."""
    settings.validate()
    retry_texts = None  # ids compare as text: 5 and "5" are one image
    if retry_only is not None:
        retry_texts = {(split, str(image_id)) for split, image_id in retry_only}
    unknown = sorted(set(records_by_split) - set(SPLITS))
    if unknown:
        raise ValueError(f"records_by_split has splits {unknown}; allowed: {', '.join(SPLITS)}")
    started = time.perf_counter()
    images_dir = Path(images_dir)
    tally = _Tally(list(records_by_split))
    total = sum(len(records) for records in records_by_split.values())
    with _signals_raise():
        folder_of = _folder_namer(records_by_split, images_dir)
        moves = reconcile(
            records_by_split,
            images_dir,
            removed_dir or default_removed_dir(images_dir),
            folder_of,
            refuse_shrinking=refuse_shrinking,
        )
        tally.extra.update(moved=moves.moved, set_aside=moves.set_aside, restored=moves.restored)
        plan = _plan(records_by_split, folder_of, tally, retry_texts)
        plan.sources = read_sources(images_dir)
        try:
            with progress(total=total, initial=tally.done, desc="download", smoothing=0.1) as bar:
                if plan.existing or plan.jobs:
                    _fetch_and_store(plan, Path(competition_dir), settings, tally, bar)
        finally:  # interrupted too: the versions of what was written are kept
            write_sources(images_dir, plan.sources)
            add_decoded(images_dir, plan.decoded)
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
            f"run (under dvc repro, that out must be declared persist: true)"
        )
    wanted: set[tuple[str, str]] = set()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in ("split", "image_id") if name not in (reader.fieldnames or ())]
        if missing:
            raise FailuresFileError(
                f"{path}: no column {missing[0]!r}; expected the header {','.join(FAILURE_COLUMNS)}"
            )
        for row in reader:
            split, image_id = row["split"], row["image_id"] or ""
            if split not in SPLITS or not is_id_text(image_id):
                raise FailuresFileError(
                    f"{path}: line {reader.line_num}: split {split!r}, image_id {image_id!r}; "
                    f"expected one of {', '.join(SPLITS)} and {ALLOWED_IDS}"
                )
            wanted.add((split, image_id))
    return wanted


# ---------------------------------------------------------------------------------------------
# counting: the report and the failure rows, nothing else per image


class _Tally:
    def __init__(self, splits: list[str]) -> None:
        self.per_split: dict[str, Counter[str]] = {split: Counter() for split in splits}
        self.reasons: Counter[str] = Counter()
        self.failures: list[tuple[str, int | str, str, str]] = []
        self.extra: Counter[str] = Counter()  # bytes, bytes_written, resized, ...
        self.fetching_s = 0.0  # first request to last image stored

    def count(self, split: str, status: str) -> None:
        self.per_split[split][status] += 1

    @property
    def done(self) -> int:
        return sum(counts.total() for counts in self.per_split.values())

    def downloaded(
        self, split: str, nbytes: int, written: int, resized: bool, later_url: bool
    ) -> None:
        self.count(split, DOWNLOADED)
        self.extra.update(
            bytes=nbytes, bytes_written=written, resized=int(resized), from_later_url=int(later_url)
        )

    def failed(self, record: ImageRecord, reasons: list[str]) -> None:
        self.count(record.split, FAILED)
        self.reasons[reasons[-1]] += 1
        self.failures.append((record.split, record.image_id, record.urls[-1], ";".join(reasons)))

    def not_attempted(self, record: ImageRecord) -> None:
        self.count(record.split, NOT_ATTEMPTED)
        self.failures.append((record.split, record.image_id, record.urls[0], NOT_ATTEMPTED))

    def report(self, elapsed_s: float) -> dict[str, Any]:
        """Counts per outcome, per split and per failure reason, plus bytes and throughput."""
        per_split = {
            split: {
                "total": sum(counts.values()),
                **{status: counts[status] for status in STATUSES},
            }
            for split, counts in self.per_split.items()
        }
        totals = {status: sum(c[status] for c in per_split.values()) for status in STATUSES}
        extras = (
            "bytes",
            "bytes_written",
            "resized",
            "from_later_url",
            "existing_resized",
            "existing_replaced",
            "source_changed",
            "moved",
            "set_aside",
            "restored",
        )
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
    sources: dict[tuple[str, str], Source] = field(default_factory=dict)  # (split, id) ->
    decoded: bytearray = field(default_factory=bytearray)  # digests of the images written


def read_sources(images_dir: Path) -> dict[tuple[str, str], Source]:
    """``{(split, image id): (url, validator)}`` of ``images_dir/.sources.tsv``; empty when
    there is none (or a line is not four fields: the versions are then found again)."""
    path = Path(images_dir) / SOURCES_FILE
    if not path.is_file():
        return {}
    sources = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields_ = line.split("\t")
        if len(fields_) == 4:
            sources[(fields_[0], fields_[1])] = (fields_[2], fields_[3])
    return sources


def write_sources(images_dir: Path, sources: dict[tuple[str, str], Source]) -> None:
    """Write ``images_dir/.sources.tsv`` atomically, in split then id order."""
    if not sources and not (Path(images_dir) / SOURCES_FILE).exists():
        return
    rows = sorted(sources.items(), key=lambda item: (_split_rank(item[0][0]), id_order(item[0][1])))
    # tabs and newlines cannot be in a URL the lists allow, nor in a validator we build
    write_text(
        Path(images_dir) / SOURCES_FILE,
        "".join(
            f"{split}\t{image_id}\t{url}\t{validator}\n"
            for (split, image_id), (url, validator) in rows
            if "\t" not in url + validator and "\n" not in url + validator
        ),
    )


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
        logger.info(
            "retrying the listed failures: %d images to fetch, %d missing but not "
            "listed (not attempted)",
            len(plan.jobs),
            sum(counts[NOT_ATTEMPTED] for counts in tally.per_split.values()),
        )
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
                    keep, drop = sorted(
                        (names[stem], entry.name), key=lambda name: not name.endswith(".jpg")
                    )
                    (folder / drop).unlink()
                    names[stem] = keep
                else:
                    names[stem] = entry.name
    if removed:
        logger.info("%s: removed %d leftover temp files", folder, removed)
    return names


# ---------------------------------------------------------------------------------------------
# running: the jobs handed to the worker processes, their outcomes counted


def _fetch_and_store(
    plan: _Plan, competition_dir: Path, settings: DownloadSettings, tally: _Tally, bar: tqdm
) -> None:
    # Processes, not threads: PIL parses headers and runs parts of its decoders in Python with
    # the GIL held, which would stall an event loop in the same process and cap decoding at one
    # core. Each worker fetches its own images, so bodies never cross a pipe. "forkserver", not
    # fork: this process already runs threads (tqdm's monitor), and forking them can deadlock.
    count = min(pools.worker_count(settings.workers), settings.concurrency, settings.per_host)
    # each worker gets its share of both limits, so together they never exceed them
    options = [
        settings.fetch_options(concurrency=concurrency, per_host=per_host)
        for concurrency, per_host in zip(
            shares(settings.concurrency, count), shares(settings.per_host, count), strict=True
        )
    ]
    records, job_of = _jobs(plan)
    workers = Workers(
        fetch_options=options,
        limits=settings.limits,
        competition_dir=competition_dir,
        refetch=settings.refetch,
        context=pools.context(preload=worker_preload()),
    )
    try:
        for outcome in workers.run(len(records), job_of):
            _count(outcome, records[outcome.index], tally, bar)
            _note_source(outcome, records[outcome.index], plan.sources)
            plan.decoded += outcome.digest  # 16 bytes an image, no object per image
    finally:
        workers.close()  # on an interrupt: each drops its requests and finishes its write
    tally.fetching_s = workers.fetching_s
    if tally.extra["source_changed"]:
        logger.info(
            "%d images whose source changed since they were copied: fetched again",
            tally.extra["source_changed"],
        )
    if tally.extra["existing_replaced"]:
        logger.info(
            "%d images on disk were broken or placeholders: deleted and fetched again",
            tally.extra["existing_replaced"],
        )


def _jobs(plan: _Plan) -> tuple[list[ImageRecord], Callable[[int], Job]]:
    """The records in the order the workers take them (the images on disk first, to check),
    and the job of each position, made only when it is handed out."""
    fetches = list(plan.jobs)
    # Lists are often grouped by source site; a fixed shuffle spreads the hosts so the
    # per-host limit does not leave most workers queueing behind one host.
    random.Random(0).shuffle(fetches)
    existing = plan.existing
    records = [record for record, _ in existing] + fetches

    def job_of(index: int) -> Job:
        record = records[index]
        if index < len(existing):
            return Job(
                CHECK,
                record.urls,
                str(record.image_id),
                existing[index][1],
                plan.sources.get((record.split, str(record.image_id))),
            )
        return Job(FETCH, record.urls, str(record.image_id), str(plan.folder_of(record)))

    return records, job_of


def _note_source(
    outcome: Outcome, record: ImageRecord, sources: dict[tuple[str, str], Source]
) -> None:
    key = (record.split, str(record.image_id))
    if outcome.source is not None:
        sources[key] = outcome.source
    elif outcome.kind in (
        fetch_workers.FAILED,
        fetch_workers.REFRESHED,
        fetch_workers.REPLACED,
        fetch_workers.DOWNLOADED,
    ):
        sources.pop(key, None)  # no copy, or one of an unknown version


def _count(outcome: Outcome, record: ImageRecord, tally: _Tally, bar: tqdm) -> None:
    if outcome.kind == fetch_workers.REPLACED:  # its fetch's outcome follows
        tally.extra["existing_replaced"] += 1
        return
    if outcome.kind == fetch_workers.REFRESHED:  # its source changed; its fetch follows
        tally.extra["source_changed"] += 1
        return
    if outcome.kind == fetch_workers.DOWNLOADED:
        tally.downloaded(
            record.split, outcome.nbytes, outcome.written, outcome.resized, outcome.later_url
        )
    elif outcome.kind == fetch_workers.FAILED:
        tally.failed(record, list(outcome.reasons))
    else:
        tally.count(record.split, SKIPPED_EXISTING)
        tally.extra["existing_resized"] += int(outcome.resized)
    bar.update()
    if tally.reasons.total() and bar.n % 64 == 0:  # the failure count beside the bar
        bar.set_postfix(failed=tally.reasons.total(), refresh=False)


def worker_preload() -> list[str]:
    """What the forkserver imports once, before it forks the workers: this module (and so
    lib.acquire.fetch_workers, all a worker runs) and the main module. multiprocessing makes
    every worker import the main module again (for ``python -m stages.download``: aiohttp,
    tqdm, yaml...); with its imports already loaded, that is only the module's body."""
    main_spec = getattr(sys.modules["__main__"], "__spec__", None)
    main_name = getattr(main_spec, "name", None)  # None when run as a script
    return [*([main_name] if main_name else []), __name__]


# ---------------------------------------------------------------------------------------------
# stopping on SIGINT / SIGTERM


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise DownloadInterrupted, so the workers are stopped on the way out
    instead of orphaned. Set here, not left to Python's Ctrl-C handling, which a process started
    with SIGINT ignored (a background job of a script) never gets."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: object) -> None:
        raise DownloadInterrupted(signum)

    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, on_signal) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
        report["total"],
        report["downloaded"],
        report["skipped_existing"],
        report["failed"],
        f" ({reasons})" if reasons else "",
        f", {not_attempted} not attempted (not in the failures list)" if not_attempted else "",
        report["bytes"] / 1e6,
        report["elapsed_s"],
        report["images_per_s"],
    )
