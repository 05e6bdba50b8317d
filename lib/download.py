"""Download every image of a competition into an ImageFolder tree.

In: ``{split: [ImageRecord, ...]}`` from ``lib.competition``, the competition folder (base of
relative ``file:`` URLs, and the only folder ``file:`` URLs may read from), the images folder
and ``DownloadSettings``.

Out, on disk: ``images_dir/<split>/<label>/<image_id>.<ext>`` for the labelled splits (label
folders zero-padded to one width across train and validation, so ImageFolder's string sort is
numeric order) and ``images_dir/test/<image_id>.<ext>``; ``<ext>`` comes from the decoded image
format (jpg, png, gif, webp, bmp, tif, ppm), never from the URL, and the bytes are the original
ones, unchanged. Each file appears atomically (temp file ``.tmp*`` + ``os.replace``); a re-run
skips images already there and removes leftover temp files.

Out, returned: ``DownloadResult`` with
- ``report``: ``{"total", "downloaded", "skipped_existing", "failed", "bytes", "elapsed_s",
  "images_per_s", "per_split": {split: {"total", "downloaded", "skipped_existing", "failed"}},
  "failure_reasons": {reason: count}}`` (a failed image counts under its LAST URL's reason);
- ``failures``: rows ``{"split", "image_id", "url", "reason"}``, ``url`` the last URL tried and
  ``reason`` every tried URL's reason in order, joined with ``;`` (``http_404;placeholder``);
- ``outcomes``: one ``ImageOutcome`` per image.
``write_report`` saves the report as JSON and the failures as CSV.

A failed image is a value, not an exception. Reasons: ``http_<status>`` (``http_404``...),
``timeout``, ``connection_error`` (refused, reset, body cut short), ``too_many_redirects``,
``invalid_url``, ``bad_response`` (unparseable HTTP), ``not_an_image``, ``truncated_image``,
``corrupt_image`` (decoder error other than truncation), ``placeholder``, ``too_large``,
``decompression_bomb``, ``not_found``, ``file_outside_competition``.
"""

from __future__ import annotations

import asyncio
import csv
import email.utils
import io
import json
import logging
import math
import multiprocessing
import os
import random
import secrets
import struct
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lib.competition import LABELLED_SPLITS, SPLITS, ImageRecord, label_dir_name, label_width

logger = logging.getLogger(__name__)

DOWNLOADED = "downloaded"
SKIPPED_EXISTING = "skipped_existing"
FAILED = "failed"
FAILURE_COLUMNS = ("split", "image_id", "url", "reason")

TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
TOO_MANY_REDIRECTS = "too_many_redirects"
INVALID_URL = "invalid_url"
BAD_RESPONSE = "bad_response"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED_IMAGE = "truncated_image"
CORRUPT_IMAGE = "corrupt_image"
PLACEHOLDER = "placeholder"
TOO_LARGE = "too_large"
DECOMPRESSION_BOMB = "decompression_bomb"
NOT_FOUND = "not_found"
FILE_OUTSIDE_COMPETITION = "file_outside_competition"

MAX_RETRY_DELAY_S = 30.0
TMP_PREFIX = ".tmp"
_CHUNK_BYTES = 1 << 16

# Formats PIL may try. Anything else (ICO favicons, EPS that needs ghostscript, PSD...) is no
# training image and counts as not_an_image; the list also keeps rarely used decoders away
# from bytes fetched off the internet.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}  # others: the format in lower case


@dataclass
class DownloadSettings:
    """Knobs of the downloader, validated on construction and again on entry."""

    concurrency: int = 64  # total simultaneous requests (and images in flight)
    per_host: int = 8  # simultaneous requests per host
    timeout_s: float = 30.0  # total timeout per request, connect to last byte
    retries: int = 2  # extra attempts per URL for retryable failures
    backoff_s: float = 0.5  # base of the exponential backoff, seconds (with jitter)
    min_side: int = 8  # images smaller than this on either side are placeholders
    max_bytes: int = 20_000_000  # larger bodies are rejected (reading stops at the cap)
    max_pixels: int = 89_478_485  # width * height above this is a decompression bomb (PIL default)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field, its value and what is allowed."""
        _require_int("concurrency", self.concurrency, minimum=1)
        _require_int("per_host", self.per_host, minimum=1)
        _require_number("timeout_s", self.timeout_s, allow_zero=False)
        _require_int("retries", self.retries, minimum=0)
        _require_number("backoff_s", self.backoff_s, allow_zero=True)
        _require_int("min_side", self.min_side, minimum=1)
        _require_int("max_bytes", self.max_bytes, minimum=1)
        _require_int("max_pixels", self.max_pixels, minimum=1)


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image: downloaded, skipped_existing or failed (with reasons)."""

    split: str
    image_id: int
    status: str
    url: str = ""  # the URL that succeeded, or the last one tried
    reason: str = ""  # when failed: the last URL's reason
    reasons: tuple[str, ...] = ()  # one per URL that failed, in the order tried
    nbytes: int = 0


@dataclass
class DownloadResult:
    report: dict[str, Any]
    failures: list[dict[str, Any]]
    outcomes: list[ImageOutcome] = field(repr=False)


@dataclass(frozen=True)
class _Job:
    record: ImageRecord
    dest_dir: Path


@dataclass(frozen=True)
class _Attempt:
    """One HTTP request's result: a body, or a reason and whether trying again may help."""

    body: bytes | None = None
    reason: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None


def download_competition(
    records_by_split: dict[str, list[ImageRecord]],
    *,
    competition_dir: Path,
    images_dir: Path,
    settings: DownloadSettings,
) -> DownloadResult:
    """Fetch every record's image into ``images_dir``; see the module docstring for the layout."""
    settings.validate()
    unknown = sorted(set(records_by_split) - set(SPLITS))
    if unknown:
        raise ValueError(f"records_by_split has splits {unknown}; allowed: {', '.join(SPLITS)}")
    started = time.perf_counter()
    prune_stale(records_by_split, Path(images_dir))
    jobs, outcomes = _plan(records_by_split, Path(images_dir))
    total = len(jobs) + len(outcomes)
    with tqdm(total=total, initial=len(outcomes), unit="img", desc="download", disable=None) as bar:
        outcomes += asyncio.run(_download_all(jobs, Path(competition_dir), settings, bar))
    elapsed_s = time.perf_counter() - started
    report = build_report(outcomes, list(records_by_split), elapsed_s)
    _log_summary(report)
    return DownloadResult(report=report, failures=failure_rows(outcomes), outcomes=outcomes)


def destination_dir(images_dir: Path, record: ImageRecord, width: int) -> Path:
    """Folder an image goes to: ``<split>/<label>`` for labelled records, ``<split>`` else."""
    if record.label is None:
        return images_dir / record.split
    return images_dir / record.split / label_dir_name(record.label, width)


def build_report(
    outcomes: list[ImageOutcome], splits: list[str], elapsed_s: float
) -> dict[str, Any]:
    """Counts per outcome, per split and per failure reason, plus bytes and throughput."""
    statuses = (DOWNLOADED, SKIPPED_EXISTING, FAILED)
    per_split = {split: dict.fromkeys(("total", *statuses), 0) for split in splits}
    for outcome in outcomes:
        counts = per_split.setdefault(outcome.split, dict.fromkeys(("total", *statuses), 0))
        counts["total"] += 1
        counts[outcome.status] += 1
    status_counts = Counter(outcome.status for outcome in outcomes)
    reasons = Counter(outcome.reason for outcome in outcomes if outcome.status == FAILED)
    downloaded = status_counts[DOWNLOADED]
    return {
        "total": len(outcomes),
        **{status: status_counts[status] for status in statuses},
        "bytes": sum(outcome.nbytes for outcome in outcomes),
        "elapsed_s": round(elapsed_s, 3),
        "images_per_s": round(downloaded / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        "per_split": per_split,
        "failure_reasons": dict(sorted(reasons.items())),
    }


def failure_rows(outcomes: list[ImageOutcome]) -> list[dict[str, Any]]:
    """One row per failed image, in split then image_id order, ready for the failures CSV."""
    failed = [outcome for outcome in outcomes if outcome.status == FAILED]
    failed.sort(key=lambda outcome: (_split_rank(outcome.split), outcome.image_id))
    return [
        {"split": outcome.split, "image_id": outcome.image_id, "url": outcome.url,
         "reason": ";".join(outcome.reasons)}
        for outcome in failed
    ]


def write_report(
    report: dict[str, Any],
    failures: list[dict[str, Any]],
    *,
    report_path: Path,
    failures_path: Path,
) -> None:
    """Write the report as JSON (indent 2, sorted keys) and the failures as CSV, atomically."""
    for path in (report_path, failures_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    _atomic_write(Path(report_path), text.encode("utf-8"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FAILURE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(failures)
    _atomic_write(Path(failures_path), buffer.getvalue().encode("utf-8"))


def check_image(body: bytes, *, min_side: int, max_pixels: int) -> tuple[str | None, str | None]:
    """``(extension, None)`` if ``body`` decodes fully into a real image, else ``(None, reason)``.

    Runs in the worker processes, where ``_init_decoder`` has set PIL's own guard to max_pixels.
    """
    try:
        with Image.open(io.BytesIO(body), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                return None, DECOMPRESSION_BOMB
            if min(width, height) < min_side:
                return None, PLACEHOLDER
            image.load()  # decodes every byte of the first frame: catches truncated bodies
            image_format = image.format or ""
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, DECOMPRESSION_BOMB
    except UnidentifiedImageError:
        return None, NOT_AN_IMAGE
    # the errors PIL's decoders raise on bad data; anything else is a bug and propagates
    except (OSError, EOFError, SyntaxError, ValueError, struct.error) as err:
        truncated = isinstance(err, EOFError) or "truncated" in str(err).lower()
        return None, TRUNCATED_IMAGE if truncated else CORRUPT_IMAGE
    return _EXTENSIONS.get(image_format, image_format.lower()), None


# ---------------------------------------------------------------------------------------------
# planning: destinations, existing files, leftovers


def _plan(
    records_by_split: dict[str, list[ImageRecord]], images_dir: Path
) -> tuple[list[_Job], list[ImageOutcome]]:
    """Jobs for images still missing, and skipped_existing outcomes for those already there."""
    labelled = (r for split in LABELLED_SPLITS for r in records_by_split.get(split, ()))
    width = label_width(labelled)  # one width for train and validation: same folder names
    existing: dict[Path, set[str]] = {}
    jobs: list[_Job] = []
    skipped: list[ImageOutcome] = []
    for split in sorted(records_by_split, key=_split_rank):
        for record in records_by_split[split]:
            dest_dir = destination_dir(images_dir, record, width)
            if dest_dir not in existing:
                existing[dest_dir] = _prepare_dir(dest_dir)
            if str(record.image_id) in existing[dest_dir]:
                skipped.append(ImageOutcome(split, record.image_id, SKIPPED_EXISTING))
            else:
                jobs.append(_Job(record, dest_dir))
    return jobs, skipped


def prune_stale(records_by_split: dict[str, list[ImageRecord]], images_dir: Path) -> int:
    """Delete images that the lists no longer name (or name under another label or split), so
    the tree mirrors the current lists and later stages never train on a stale image."""
    labelled = (r for split in LABELLED_SPLITS for r in records_by_split.get(split, ()))
    width = label_width(labelled)
    wanted = {(destination_dir(images_dir, r, width), str(r.image_id))
              for records in records_by_split.values() for r in records}
    removed = 0
    for split in SPLITS:
        for path in sorted((images_dir / split).rglob("*")):
            if path.is_file() and (path.parent, path.name.partition(".")[0]) not in wanted:
                path.unlink()
                removed += 1
        for folder in sorted((images_dir / split).glob("*/"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    if removed:
        logger.info("removed %d images that the competition lists no longer name", removed)
    return removed


def _prepare_dir(dest_dir: Path) -> set[str]:
    """Create ``dest_dir``, delete leftover temp files, return the stems of the files there."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    stems: set[str] = set()
    removed = 0
    with os.scandir(dest_dir) as entries:
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
            elif entry.is_file():
                stems.add(entry.name.partition(".")[0])  # any extension counts as present
    if removed:
        logger.info("%s: removed %d leftover temp files", dest_dir, removed)
    return stems


# ---------------------------------------------------------------------------------------------
# fetching: workers, URLs in turn, HTTP with retries, file URLs


async def _download_all(
    jobs: list[_Job], competition_dir: Path, settings: DownloadSettings, bar: tqdm
) -> list[ImageOutcome]:
    outcomes: list[ImageOutcome] = []
    if not jobs:
        return outcomes
    connector = aiohttp.TCPConnector(
        limit=settings.concurrency, limit_per_host=settings.per_host, ttl_dns_cache=300
    )
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    with _decoder_pool(settings, len(jobs)) as pool:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            progress = _Progress(bar)
            fetch = _Fetcher(session, competition_dir.resolve(), settings).fetch
            store = _Storer(pool, settings).store
            # Lists are often grouped by source site; a fixed shuffle spreads the hosts so the
            # per-host limit does not leave most workers queueing behind one host.
            shuffled = random.Random(0).sample(jobs, len(jobs))
            pending = iter(shuffled)  # shared by the workers; next() is atomic in one loop
            workers = min(settings.concurrency, len(jobs))
            await _run_workers(
                [_worker(pending, fetch, store, outcomes, progress) for _ in range(workers)]
            )
    return outcomes


async def _run_workers(coroutines: list[Awaitable[None]]) -> None:
    """Await all workers; on the first error cancel the others and re-raise it unwrapped."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _worker(
    pending: Iterator[_Job],
    fetch: Callable[[str], Awaitable[tuple[bytes | None, str | None]]],
    store: Callable[[bytes, _Job], Awaitable[str | None]],
    outcomes: list[ImageOutcome],
    progress: _Progress,
) -> None:
    # A fixed pool of workers, not one task per image: bounds memory (bodies in flight) and
    # the number of tasks for 200k-image competitions.
    for job in pending:
        outcome = await _fetch_image(job, fetch, store)
        outcomes.append(outcome)
        progress.advance(outcome)


async def _fetch_image(
    job: _Job,
    fetch: Callable[[str], Awaitable[tuple[bytes | None, str | None]]],
    store: Callable[[bytes, _Job], Awaitable[str | None]],
) -> ImageOutcome:
    """Try the record's URLs in order until one gives a valid image."""
    record = job.record
    reasons: list[str] = []
    for url in record.urls:
        body, reason = await fetch(url)
        if body is not None:
            reason = await store(body, job)
            if reason is None:
                return ImageOutcome(record.split, record.image_id, DOWNLOADED, url=url,
                                    reasons=tuple(reasons), nbytes=len(body))
        assert reason is not None
        reasons.append(reason)
    return ImageOutcome(record.split, record.image_id, FAILED, url=record.urls[-1],
                        reason=reasons[-1], reasons=tuple(reasons))


@dataclass
class _Progress:
    """The tqdm bar, with the running count of failures shown beside it."""

    bar: tqdm
    failed: int = 0

    def advance(self, outcome: ImageOutcome) -> None:
        if outcome.status == FAILED:
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update()


@dataclass
class _Fetcher:
    session: aiohttp.ClientSession
    competition_dir: Path  # resolved
    settings: DownloadSettings

    async def fetch(self, url: str) -> tuple[bytes | None, str | None]:
        """``(body, None)`` or ``(None, reason)`` for one URL, retries included."""
        if urlsplit(url).scheme.lower() == "file":
            return await asyncio.to_thread(
                _read_file_url, url, self.competition_dir, self.settings.max_bytes
            )
        return await self._fetch_http(url)

    async def _fetch_http(self, url: str) -> tuple[bytes | None, str | None]:
        retries = self.settings.retries
        for attempt in range(retries + 1):
            result = await _http_get(self.session, url, self.settings.max_bytes)
            if not result.retryable or attempt == retries:
                break
            delay = _backoff_delay(attempt, self.settings.backoff_s, result.retry_after_s)
            await asyncio.sleep(delay)
        return result.body, result.reason


async def _http_get(session: aiohttp.ClientSession, url: str, max_bytes: int) -> _Attempt:
    try:
        async with session.get(url) as response:
            if response.status >= 300:  # redirects were followed; a 3xx left over is a failure
                return _status_failure(response)
            body = await _read_capped(response, max_bytes)
    except TimeoutError:  # also aiohttp's ServerTimeoutError, a subclass
        return _Attempt(reason=TIMEOUT, retryable=True)
    except aiohttp.TooManyRedirects:
        return _Attempt(reason=TOO_MANY_REDIRECTS)
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
        # refused, reset, DNS failure, or a body cut short: worth another try
        return _Attempt(reason=CONNECTION_ERROR, retryable=True)
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):  # e.g. redirect to ftp://
        return _Attempt(reason=INVALID_URL)
    except aiohttp.ClientResponseError:  # a response aiohttp cannot parse
        return _Attempt(reason=BAD_RESPONSE)
    if body is None:
        return _Attempt(reason=TOO_LARGE)
    return _Attempt(body=body)


def _status_failure(response: aiohttp.ClientResponse) -> _Attempt:
    status = response.status
    retryable = status == 429 or 500 <= status <= 599  # throttled or server trouble
    retry_after = _retry_after_s(response.headers.get("Retry-After")) if retryable else None
    return _Attempt(reason=f"http_{status}", retryable=retryable, retry_after_s=retry_after)


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``max_bytes`` (stop reading there)."""
    if response.content_length is not None and response.content_length > max_bytes:
        return None
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _backoff_delay(attempt: int, backoff_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff, half fixed and half random ("equal jitter"), capped at 30 s.

    The random half keeps many workers that failed together from retrying in lockstep
    (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/); a server's
    Retry-After wins when longer, within the same cap.
    """
    base = backoff_s * 2**attempt
    delay = base / 2 + random.uniform(0, base / 2)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, MAX_RETRY_DELAY_S)


def _read_file_url(
    url: str, competition_dir: Path, max_bytes: int
) -> tuple[bytes | None, str | None]:
    """Read a ``file:`` URL, only if it resolves (symlinks included) inside competition_dir."""
    path = _file_url_path(url, competition_dir)
    if path is None:
        return None, FILE_OUTSIDE_COMPETITION
    if not path.is_file():
        return None, NOT_FOUND
    try:
        if path.stat().st_size > max_bytes:
            return None, TOO_LARGE
        return path.read_bytes(), None
    except FileNotFoundError:  # removed since the check above
        return None, NOT_FOUND


def _file_url_path(url: str, competition_dir: Path) -> Path | None:
    """Resolved path of a file URL, or None when it points outside ``competition_dir``.

    ``file:relative/x.png`` is relative to competition_dir, ``file:///abs/x.png`` absolute.
    """
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):  # a file on another machine
        return None
    path = Path(unquote(parts.path))
    resolved = (path if path.is_absolute() else competition_dir / path).resolve()
    return resolved if resolved.is_relative_to(competition_dir) else None


# ---------------------------------------------------------------------------------------------
# validating and storing: in worker processes


def _decoder_pool(settings: DownloadSettings, jobs: int) -> ProcessPoolExecutor:
    # Processes, not threads: PIL parses headers and runs parts of its decoders in Python with
    # the GIL held, which would stall the event loop and cap decoding at one core; a body costs
    # one pickled copy, small next to a decode. "forkserver", not fork: this process already
    # runs threads (aiohttp's DNS resolver, tqdm's monitor), and forking them can deadlock.
    workers = max(1, min(os.cpu_count() or 1, settings.concurrency, jobs))
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_init_decoder,
        initargs=(settings.max_pixels,),
    )


def _init_decoder(max_pixels: int) -> None:
    """Worker set-up: PIL's own bomb guard at our limit, and its warning made an error."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    # PIL only warns between 1x and 2x the limit; here anything over the limit is rejected
    warnings.simplefilter("error", Image.DecompressionBombWarning)


@dataclass
class _Storer:
    pool: ProcessPoolExecutor
    settings: DownloadSettings

    async def store(self, body: bytes, job: _Job) -> str | None:
        """Validate and write ``body`` in a worker process; the failure reason, or None."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, _check_and_store, body, str(job.dest_dir), str(job.record.image_id),
            self.settings.min_side, self.settings.max_pixels,
        )


def _check_and_store(
    body: bytes, dest_dir: str, stem: str, min_side: int, max_pixels: int
) -> str | None:
    """Worker entry: write ``body`` as ``dest_dir/stem.<ext>`` if it is a valid image."""
    extension, reason = check_image(body, min_side=min_side, max_pixels=max_pixels)
    if extension is None:
        return reason
    _atomic_write(Path(dest_dir) / f"{stem}.{extension}", body)
    return None


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, then rename: readers never see half a file."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # no-op after the rename; removes a half-written file


# ---------------------------------------------------------------------------------------------
# small helpers


def _split_rank(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"download setting {name}={value!r}; expected an integer >= {minimum}")


def _require_number(name: str, value: Any, *, allow_zero: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"download setting {name}={value!r}; expected a finite number {rule}")


def _log_summary(report: dict[str, Any]) -> None:
    reasons = ", ".join(f"{reason} {n}" for reason, n in report["failure_reasons"].items())
    logger.info(
        "download: %d images: %d downloaded, %d skipped (already there), %d failed%s; "
        "%.1f MB in %.1f s (%.1f images/s)",
        report["total"], report["downloaded"], report["skipped_existing"], report["failed"],
        f" ({reasons})" if reasons else "", report["bytes"] / 1e6, report["elapsed_s"],
        report["images_per_s"],
    )
