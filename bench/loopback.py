"""What the download benchmarks share: their photos, a loopback image server and the folder
the contenders write to.

- ``make_photos(n)``: JPEGs of 400-1,300 px (longer side; quality 90), each a mosaic of random
  crops, rescales and flips of the two real photographs scikit-learn ships
  (``load_sample_image``: china.jpg, flower.jpg), so they have real photos' detail and JPEG
  cost without any download; ``make_small()``: 64 of 64-200 px. Made once into bench/.cache/
  (git-ignored).
- ``serving(*folders, disk=None)``: an HTTP server on 127.0.0.1 in its own process, answering
  ``/p/<delay_ms>/<name>`` (a photo by name), ``/s/<delay_ms>/<n>.jpg`` (the small images
  in turn) and ``/d/<delay_ms>/<path>`` (a file under the folder ``disk``, read when asked:
  for lists too large to hold in memory; 404 when there is none) after ``delay_ms``. Each
  response of the first two is built once in memory and sent by a plain
  asyncio protocol: it stands for remote hosts, so it takes as little as possible of the cores
  the contenders share (less than aiohttp's low-level server).
- ``use_out``, ``fresh``: the contenders' output folder, on the tmpfs /dev/shm when it has
  room (``default_out`` says why), one new folder per run, all deleted when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib.acquire.download import DownloadSettings  # noqa: E402
from lib.common.params import read_params_file  # noqa: E402

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
PHOTOS = CACHE / "download_photos"  # the served photos
SMALL = CACHE / "download_small"  # the scale run's small images
DISK_OUT = CACHE / "download_out"
SHM = Path("/dev/shm")
SHM_ROOM = 4 << 30  # bytes free on the tmpfs to use it: a run writes about 0.6 GB
OUT = DISK_OUT  # every run's output, deleted when the benchmark ends (``use_out``)
QUALITY = 90
SMALL_COUNT = 64


def default_settings(**overrides) -> DownloadSettings:
    """The downloader's settings from params.yaml, with `overrides`."""
    return DownloadSettings.from_params(read_params_file(BENCH.parent / "params.yaml"), **overrides)


# ---------------------------------------------------------------------------------------------
# the photos


def _sources() -> list[Image.Image]:
    from sklearn.datasets import load_sample_image  # real photos bundled with scikit-learn

    return [Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]


def _mosaic(
    sources: list[Image.Image], rng: np.random.Generator, size: tuple[int, int]
) -> Image.Image:
    """A ``size`` image tiled with random crops of the sources, each rescaled and maybe
    flipped: real photographic detail at any size up to 1,300 px."""
    width, height = size
    canvas = Image.new("RGB", size)
    y = 0
    while y < height:
        tile_h = min(height - y, int(rng.integers(250, 420)))
        x = 0
        while x < width:
            tile_w = min(width - x, int(rng.integers(300, 620)))
            source = sources[int(rng.integers(len(sources)))]
            scale = rng.uniform(1.0, 1.4)
            scaled = source.resize(
                (round(source.width * scale), round(source.height * scale)),
                Image.Resampling.BICUBIC,
            )
            left = int(rng.integers(0, scaled.width - tile_w + 1))
            top = int(rng.integers(0, scaled.height - tile_h + 1))
            tile = scaled.crop((left, top, left + tile_w, top + tile_h))
            if rng.random() < 0.5:
                tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            canvas.paste(tile, (x, y))
            x += tile_w
        y += tile_h
    return canvas


def make_photos(count: int) -> list[Path]:
    """``count`` photo JPEGs, longer side 400-1,300 px, cached under bench/.cache/."""
    PHOTOS.mkdir(parents=True, exist_ok=True)
    paths = [PHOTOS / f"{i}.jpg" for i in range(count)]
    missing = [i for i, path in enumerate(paths) if not path.exists()]
    if missing:
        sources = _sources()
        for n, i in enumerate(missing):
            rng = np.random.default_rng(i)
            longer = int(rng.integers(400, 1301))
            shorter = int(longer * rng.uniform(0.6, 1.0))
            size = (longer, shorter) if rng.random() < 0.6 else (shorter, longer)
            _mosaic(sources, rng, size).save(paths[i], quality=QUALITY)
            if n % 250 == 0:
                print(f"made {n}/{len(missing)} photos", file=sys.stderr)
    return paths


def make_small() -> list[Path]:
    """``SMALL_COUNT`` JPEGs of 64-200 px for the scale run (served in turn)."""
    SMALL.mkdir(parents=True, exist_ok=True)
    paths = [SMALL / f"{i}.jpg" for i in range(SMALL_COUNT)]
    if not all(path.exists() for path in paths):
        sources = _sources()
        for i, path in enumerate(paths):
            rng = np.random.default_rng(10_000 + i)
            side = int(rng.integers(64, 201))
            _mosaic(sources, rng, (side, int(side * rng.uniform(0.6, 1.0)))).save(
                path, quality=QUALITY
            )
    return paths


# ---------------------------------------------------------------------------------------------
# the server: its own process, so it never competes for our GIL


_STATUS_OK = b"HTTP/1.1 200 OK\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_CLOSE = b"Connection: close\r\n"


def _serve(
    folders: list[str], ready: multiprocessing.connection.Connection, disk: str | None = None
) -> None:
    """The server process: HTTP/1.1 (keep-alive, or ``Connection: close`` as urllib asks) on
    a plain asyncio protocol, every response of ``folders`` built once in memory, sent in one
    write; those of ``disk`` read from it on each request."""
    responses = {
        path.name: _response(path.read_bytes())
        for folder in folders
        for path in sorted(Path(folder).glob("*.jpg"))
    }
    small = [responses[f"{i}.jpg"] for i in range(SMALL_COUNT) if f"{i}.jpg" in responses]

    def lookup(target: bytes) -> tuple[bytes, float]:
        # /<kind>/<delay_ms>/<name>: p = the photos by name, s = the small images in turn,
        # d = a file under `disk` (name: a relative path)
        kind, delay, name = (target.decode("latin-1").split("/", 3) + ["", "", ""])[1:4]
        if kind not in ("p", "s", "d") or not delay.isdigit():
            return _NOT_FOUND, 0.0
        if kind == "d":
            response = _from_disk(disk, name)
        elif kind == "p":
            response = responses.get(name, _NOT_FOUND)
        else:
            stem = name.partition(".")[0]
            response = small[int(stem) % len(small)] if stem.isdigit() else _NOT_FOUND
        return response, int(delay) / 1000

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _PhotoProtocol(lookup), "127.0.0.1", 0, backlog=4096
        )
        ready.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()  # until terminated

    asyncio.run(main())


def _from_disk(disk: str | None, name: str) -> bytes:
    if disk is None or ".." in name.split("/"):
        return _NOT_FOUND
    try:
        return _response(Path(disk, name).read_bytes())
    except OSError:  # no such file (a dead URL of the list)
        return _NOT_FOUND


def _response(body: bytes) -> bytes:
    return (
        _STATUS_OK
        + b"Content-Type: image/jpeg\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class _PhotoProtocol(asyncio.Protocol):
    """One client connection: each request's head parsed (GET only, no body), its prebuilt
    response written after its delay. The contenders never pipeline requests, so a delayed
    response cannot overtake an earlier one."""

    def __init__(self, lookup: Callable[[bytes], tuple[bytes, float]]) -> None:
        self._lookup = lookup
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            request_line, _, headers = head.partition(b"\r\n")
            parts = request_line.split(b" ")
            close = (
                len(parts) != 3
                or parts[2] != b"HTTP/1.1"
                or b"connection: close" in headers.lower()
            )
            response, delay = self._lookup(parts[1]) if len(parts) == 3 else (_NOT_FOUND, 0.0)
            if delay:
                asyncio.get_running_loop().call_later(delay, self._send, response, close)
            else:
                self._send(response, close)

    def _send(self, response: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if close:  # the status line, "Connection: close", then the rest as it was built
            status_end = response.index(b"\r\n") + 2
            transport.write(response[:status_end] + _CLOSE)
            transport.write(memoryview(response)[status_end:])
            transport.close()  # after the buffered data is sent
        else:
            transport.write(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class Server:
    """The loopback image server in a child process; ``url(kind, delay_ms, name)``."""

    def __init__(self, *folders: Path, disk: Path | None = None) -> None:
        receive, send = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.get_context("spawn").Process(
            target=_serve,
            args=([str(folder) for folder in folders], send, str(disk) if disk else None),
            daemon=True,
        )
        self.process.start()
        send.close()  # the child's end: if the child dies before it is ready, recv() raises
        try:
            self.port = receive.recv()
        except EOFError:
            self.process.join()
            raise RuntimeError(
                f"the benchmark's HTTP server process exited with code "
                f"{self.process.exitcode} before it was ready"
            ) from None
        finally:
            receive.close()

    def url(self, kind: str, delay_ms: int, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{delay_ms}/{name}"

    def close(self) -> None:
        self.process.terminate()
        self.process.join()


@contextlib.contextmanager
def serving(*folders: Path, disk: Path | None = None) -> Iterator[Server]:
    """The server over ``folders`` (and ``disk``) for the block; OUT is emptied before (an
    interrupted run's leftovers) and deleted after."""
    shutil.rmtree(OUT, ignore_errors=True)
    server = Server(*folders, disk=disk)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(OUT, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# timing and the output folder


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def default_out() -> Path:
    """Where the contenders write: a folder on the tmpfs /dev/shm when it has room, else
    bench/.cache/download_out.

    The ceiling writes nothing, so the writers' file system should cost them as little as
    possible, and the same from run to run. On a disk it does not: on ext4 without a journal,
    the kernel skips inodes freed in the last minutes when it allocates new ones
    (recently_deleted, find_inode_bit), so after any mass delete (an earlier run's output, a pip
    install) every new file costs more kernel time. ``--out`` picks another folder (to measure
    a disk)."""
    try:
        room = os.statvfs(SHM)
    except OSError:
        return DISK_OUT
    if file_system(SHM) == "tmpfs" and room.f_bavail * room.f_frsize >= SHM_ROOM:
        return SHM / "download_bench"
    return DISK_OUT


def file_system(path: Path) -> str:
    """The type of the file system ``path`` is on (``/proc/mounts``), or "unknown"."""
    path = Path(path).resolve()
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    # the longest mount point that holds the path wins (later lines shadow earlier ones)
    best = max(
        (
            (len(point), index, kind)
            for index, (point, kind) in enumerate(mounts)
            if path.is_relative_to(point)
        ),
        default=None,
    )
    return best[2] if best else "unknown"


def where_written() -> str:
    return f"the contenders write to {OUT} ({file_system(OUT)})"


def use_out(folder: Path | None) -> Path:
    """Make ``folder`` (default: ``default_out()``) where every run writes; returns it."""
    global OUT
    OUT = (folder or default_out()).resolve()
    return OUT


def fresh(name: str) -> Path:
    """A new, empty output folder for one contender's run. Nothing is deleted until the whole
    benchmark ends: on a disk, files deleted now would slow the next writer (``default_out``)."""
    folder = OUT / f"{name}_{next(_RUNS)}"
    folder.mkdir(parents=True)
    return folder


_RUNS = itertools.count()
