"""Fetch the body of one URL: HTTP(S) with retries and caps, or a file inside the competition.

In: a URL; a ``Fetcher`` built on one aiohttp client (``fetching``: bounded
total concurrency, DNS cache, connect/read/total timeouts) with the retry and size limits.
Out: ``(body, None)`` or ``(None, reason)``. A failure is a value, never an exception.

Reasons: ``http_<status>`` (``http_404``, ``http_503``...), ``timeout``, ``connection_error``
(refused, reset, body cut short), ``dns_error``, ``ssl_error``, ``too_many_redirects`` (a
redirect loop ends here too), ``invalid_url``, ``bad_response`` (unparseable HTTP),
``too_large`` (reading stops at the cap), ``not_found``, ``file_outside_competition`` and
``not_a_regular_file`` (``file:`` URLs; a FIFO, device or socket is refused, never read).

Retried, with exponential backoff and jitter: timeouts, connection and DNS errors, bodies cut
short, 429 and 5xx (a server's Retry-After is honoured, capped at ``MAX_RETRY_DELAY_S``).
Not retried: other 4xx (403, 404, 410...), TLS errors, redirect loops, oversize bodies. Each
host gets at most ``per_host`` requests at a time; a request's timeouts start once it holds one
of its host's slots, so queueing behind a busy host never counts as a timeout.

A source's version (``validator``): for a file, its size and mtime when it was read; for HTTP,
the response's ETag, Last-Modified and Content-Length. ``Fetcher.validator(url)`` gives the one
of the body just fetched, ``Fetcher.current_validator(url)`` asks again (a stat, or a HEAD
request), so a copy on disk can be compared with its source.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import random
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
DNS_ERROR = "dns_error"
SSL_ERROR = "ssl_error"
TOO_MANY_REDIRECTS = "too_many_redirects"
INVALID_URL = "invalid_url"
BAD_RESPONSE = "bad_response"
TOO_LARGE = "too_large"
NOT_FOUND = "not_found"
FILE_OUTSIDE_COMPETITION = "file_outside_competition"
NOT_A_REGULAR_FILE = "not_a_regular_file"

Client = aiohttp.ClientSession  # aiohttp's HTTP client: a connection pool, cookies, defaults

MAX_RETRY_DELAY_S = 30.0
_CHUNK_BYTES = 1 << 16
_REDIRECTS = (301, 302, 303, 307, 308)


Fetch = Callable[[str], Awaitable[tuple[bytes | None, str | None]]]


@contextlib.asynccontextmanager
async def fetching(
    competition_dir: Path,
    *,
    concurrency: int,
    per_host: int,
    timeout_s: float,
    connect_timeout_s: float,
    read_timeout_s: float,
    dns_cache_s: float,
    retries: int,
    backoff_s: float,
    max_redirects: int,
    max_bytes: int,
) -> AsyncIterator[Fetcher]:
    """``fetch(url) -> (body, reason)`` on one aiohttp client, open for the ``async with``
    block: connections pooled and reused per host, at most ``concurrency`` in total."""
    connector = aiohttp.TCPConnector(
        limit=concurrency, limit_per_host=per_host, ttl_dns_cache=dns_cache_s
    )
    # sock_connect / sock_read, not connect: aiohttp's `connect` also counts the wait for a
    # free pooled connection, which is queueing, not a slow host.
    timeout = aiohttp.ClientTimeout(
        total=timeout_s, sock_connect=connect_timeout_s, sock_read=read_timeout_s
    )
    async with Client(connector=connector, timeout=timeout) as client:
        yield Fetcher(
            client,
            competition_dir,
            retries=retries,
            backoff_s=backoff_s,
            max_redirects=max_redirects,
            max_bytes=max_bytes,
            per_host=per_host,
        )


@dataclass(frozen=True)
class _Attempt:
    """One HTTP request's result: a body, or a reason and whether trying again may help."""

    body: bytes | None = None
    reason: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    validator: str | None = None  # the response's ETag, Last-Modified, Content-Length


@dataclass
class Fetcher:
    """Fetches URLs through ``client``; ``file:`` URLs only inside ``competition_dir``."""

    client: Client
    competition_dir: Path
    retries: int  # extra attempts per URL for retryable failures
    backoff_s: float  # base of the exponential backoff
    max_redirects: int  # redirects followed; 0 = none (a 3xx is then a failure)
    max_bytes: int  # larger bodies are refused, reading stops at the cap
    per_host: int  # simultaneous requests per host
    _hosts: dict[tuple[str, int | None], asyncio.Semaphore] = field(default_factory=dict)
    _validators: dict[str, str | None] = field(default_factory=dict)  # of the bodies fetched

    def __post_init__(self) -> None:
        self.competition_dir = Path(self.competition_dir).resolve()

    async def __call__(self, url: str) -> tuple[bytes | None, str | None]:
        return await self.fetch(url)

    async def fetch(self, url: str) -> tuple[bytes | None, str | None]:
        """``(body, None)`` or ``(None, reason)`` for one URL, retries included."""
        if urlsplit(url).scheme.lower() == "file":
            body, reason, validator = await asyncio.to_thread(
                _read_file, url, self.competition_dir, self.max_bytes
            )
            if body is not None:
                self._validators[url] = validator
            return body, reason
        for attempt in range(self.retries + 1):
            result = await self._get(url)
            if not result.retryable or attempt == self.retries:
                break
            # sleep without holding the host's slot: other images of the host go on
            await asyncio.sleep(backoff_delay(attempt, self.backoff_s, result.retry_after_s))
        if result.body is not None:
            self._validators[url] = result.validator
        return result.body, result.reason

    def validator(self, url: str) -> str | None:
        """The version of the body ``fetch(url)`` last returned (taken: asked once)."""
        return self._validators.pop(url, None)

    async def current_validator(self, url: str) -> str | None:
        """The source's version now: a file's stat, or a HEAD request's validators; None when
        it cannot be told (missing, outside the competition, the request failed)."""
        if urlsplit(url).scheme.lower() == "file":
            path = file_url_path(url, self.competition_dir)
            try:
                return file_validator(path.stat()) if path is not None else None
            except OSError:
                return None
        try:
            async with (
                self._host_slot(url),
                self.client.head(
                    url,
                    allow_redirects=self.max_redirects > 0,
                    max_redirects=self.max_redirects + 1,
                ) as response,
            ):
                return http_validator(response.headers) if response.status < 300 else None
        except (TimeoutError, ValueError, aiohttp.ClientError):
            return None

    async def _get(self, url: str) -> _Attempt:
        try:
            slot = self._host_slot(url)
        except ValueError:  # e.g. a port that is not a number
            return _Attempt(reason=INVALID_URL)
        async with slot:
            return await self._request(url)

    def _host_slot(self, url: str) -> asyncio.Semaphore:
        parts = urlsplit(url)
        key = (parts.hostname or "", parts.port)
        if key not in self._hosts:
            self._hosts[key] = asyncio.Semaphore(self.per_host)
        return self._hosts[key]

    async def _request(self, url: str) -> _Attempt:
        # aiohttp raises at the max_redirects-th redirect: +1 so that n redirects are followed
        redirects = dict(
            allow_redirects=self.max_redirects > 0, max_redirects=self.max_redirects + 1
        )
        try:
            async with self.client.get(url, **redirects) as response:
                if response.status >= 300:  # redirects were followed; a 3xx left is a failure
                    return _status_failure(response.status, response.headers)
                body = await _read_capped(response, self.max_bytes)
                validator = http_validator(response.headers)
        except TimeoutError:  # also aiohttp's ServerTimeoutError and friends, subclasses
            return _Attempt(reason=TIMEOUT, retryable=True)
        except aiohttp.TooManyRedirects:
            return _Attempt(reason=TOO_MANY_REDIRECTS)
        except aiohttp.ClientSSLError:  # a bad certificate does not heal in a second
            return _Attempt(reason=SSL_ERROR)
        except aiohttp.ClientConnectorDNSError:
            return _Attempt(reason=DNS_ERROR, retryable=True)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            # refused, reset, or a body cut short: worth another try
            return _Attempt(reason=CONNECTION_ERROR, retryable=True)
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):  # e.g. redirect to ftp://
            return _Attempt(reason=INVALID_URL)
        except aiohttp.ClientResponseError:  # a response aiohttp cannot parse
            return _Attempt(reason=BAD_RESPONSE)
        if body is None:
            return _Attempt(reason=TOO_LARGE)
        return _Attempt(body=body, validator=validator)


def http_validator(headers: Mapping[str, str]) -> str | None:
    """An HTTP response's version: its ETag, Last-Modified and Content-Length (those given);
    None when it gives none."""
    given = [
        f"{name}={headers[name]}"
        for name in ("ETag", "Last-Modified", "Content-Length")
        if headers.get(name)
    ]
    return " ".join(given) or None


def file_validator(info: os.stat_result) -> str:
    """A file's version: its size and modification time (nanoseconds)."""
    return f"size={info.st_size} mtime_ns={info.st_mtime_ns}"


def _status_failure(status: int, headers: Mapping[str, str]) -> _Attempt:
    if status in _REDIRECTS:  # only when max_redirects is 0
        return _Attempt(reason=TOO_MANY_REDIRECTS)
    retryable = status == 429 or 500 <= status <= 599  # throttled or server trouble
    retry_after = retry_after_s(headers.get("Retry-After")) if retryable else None
    return _Attempt(reason=f"http_{status}", retryable=retryable, retry_after_s=retry_after)


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``max_bytes`` (stop reading there)."""
    length = response.content_length
    if length is not None and length > max_bytes:
        return None
    if length is not None and "Content-Encoding" not in response.headers:
        return await response.read()  # exactly `length` bytes: one buffer, no copies
    # unknown length, or compressed (the length is not the decoded size): read in chunks
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            return None
    return bytes(body)


def retry_after_s(value: str | None) -> float | None:
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


def backoff_delay(attempt: int, backoff_s: float, retry_after: float | None) -> float:
    """Exponential backoff, half fixed and half random ("equal jitter"), capped at 30 s.

    The random half keeps many workers that failed together from retrying in lockstep
    (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/); a server's
    Retry-After wins when longer, within the same cap.
    """
    base = backoff_s * 2**attempt
    delay = base / 2 + random.uniform(0, base / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_RETRY_DELAY_S)


def read_file_url(
    url: str, competition_dir: Path, max_bytes: int
) -> tuple[bytes | None, str | None]:
    """Read a ``file:`` URL, only if it resolves (symlinks included) inside competition_dir
    and names a regular file."""
    return _read_file(url, competition_dir, max_bytes)[:2]


def _read_file(
    url: str, competition_dir: Path, max_bytes: int
) -> tuple[bytes | None, str | None, str | None]:
    """``read_file_url`` and the version (``file_validator``) of the file it read."""
    path = file_url_path(url, competition_dir)
    if path is None:
        return None, FILE_OUTSIDE_COMPETITION, None
    try:
        # stat before opening: opening a FIFO blocks until a writer comes, opening a device
        # may act on it
        if not stat.S_ISREG(path.stat().st_mode):
            return None, NOT_A_REGULAR_FILE, None
        # O_NONBLOCK: should the path become a FIFO after the stat, opening it does not block
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None, NOT_FOUND, None
    with open(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, NOT_A_REGULAR_FILE, None
        body = handle.read(max_bytes + 1) if info.st_size <= max_bytes else b""
    if info.st_size > max_bytes or len(body) > max_bytes:  # also one grown since the fstat
        return None, TOO_LARGE, None
    return body, None, file_validator(info)


def file_url_path(url: str, competition_dir: Path) -> Path | None:
    """Resolved path of a file URL, or None when it points outside ``competition_dir``.

    ``file:relative/x.png`` is relative to competition_dir (resolved), ``file:///abs/x.png``
    absolute. A folder at the top of the competition that is a symlink (``train/`` kept on
    another disk) is followed: a path through it may resolve anywhere inside the link's own
    target, and no further (a link inside it to elsewhere is still outside).
    """
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):  # a file on another machine
        return None
    path = Path(unquote(parts.path))
    full = Path(os.path.abspath(path if path.is_absolute() else competition_dir / path))
    resolved = full.resolve()
    if resolved.is_relative_to(competition_dir):
        return resolved
    if not full.is_relative_to(competition_dir) or full == competition_dir:
        return None
    top = competition_dir / full.relative_to(competition_dir).parts[0]
    if top.is_symlink() and top.is_dir() and resolved.is_relative_to(top.resolve()):
        return resolved
    return None
