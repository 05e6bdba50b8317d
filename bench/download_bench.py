"""Benchmark the downloader against sequential urllib, a Pool(20) of urllib, img2dataset and the
decode+resize ceiling, all fetching from one real aiohttp server on 127.0.0.1.

The photos: 2,000 JPEGs of 400-1,300 px (longer side; quality 90), each a mosaic of random
crops, rescales and flips of the two real photographs scikit-learn ships
(``load_sample_image``: china.jpg, flower.jpg), so they have real photos' detail and JPEG cost
without any download. Made once into bench/.cache/ (git-ignored).

The server runs in its own process and answers ``/p/<delay_ms>/<name>`` after ``delay_ms``
(default 100 ms, a far host), each response built once in memory and sent by a plain asyncio
protocol: it stands for remote hosts, so it should take as little as possible of the cores the
contenders share (less than aiohttp's low-level server). Every contender shrinks to
``--max-side`` (256), keeping the aspect, and writes JPEGs at quality 90:
  (a) sequential urllib, on the first ``--sequential`` URLs only (0.1 s each: all 2,000 would
      take minutes), then lib.acquire.resize.prepare_image in the same process;
  (b) multiprocessing.Pool(20) of urllib (the 2018 winners' downloader), each worker fetching,
      shrinking with lib.acquire.resize.prepare_image (the same code as ours) and writing;
  (c) img2dataset (pip package, in its own venv bench/.cache/venv-img2dataset, made on first
      use; never a dependency of the project): output_format files, resize_mode
      keep_ratio_largest, resize_only_if_bigger, ``--i2d-processes`` x ``--i2d-threads``, no
      hashing; timed as it times itself (first shard's start to last shard's end, so the start
      of its processes is not counted), its whole call printed beside;
  (d) ours: lib.acquire.download.download_competition (defaults, but per_host = concurrency: the one
      loopback server stands for the thousands of hosts of a real list), timed two ways: the
      whole call (starting its worker processes included), and from its first request to its
      last image stored (the report's ``fetching_s``), as (c) times itself.
With no delay (CPU-bound):
  (e) the decode+resize ceiling: the same files read from disk and shrunk by a plain process
      pool, one process per core, no network, its start not counted;
  (f) ours, timed both ways;
  (g) the network alone: the same URLs fetched by ours' aiohttp client and lib.acquire.fetch, the
      bodies dropped; the CPU it costs per image, ours' and the server's (from /proc). With
      the ceiling's CPU per image, C (its cores x its seconds / images), and the network's, N,
      no downloader that fetches and shrinks on these same cores can beat C / (C + N) of the
      ceiling: the bound printed beside (f)'s share.
(b)-(g) take turns for ``--repeats`` rounds and each keeps its best, so a busy moment on a
shared machine does not land on one contender only. The machine's speed drifts from one run to
the next, so the ratios are also given round by round, with their median: (f)'s share of the
(e) run just before it, and ours, (d), against (b) and (c) of the same round (a ratio of two
runs measured together; best against best favours whichever contender varies most).
Targets (max_side=256): (d) >= 2x (c) and >= 1.5x (b); (f) >= 80% of (e).

``--pairs N`` instead runs only the two ratios the targets are about, N times each, every run
of ours right after the run it is compared with, and prints their median, quartiles and range.

``--scale N`` instead downloads N URLs of small images (64-200 px, kept byte for byte) with no
delay, in a fresh process for N/5 and for N, and reports the time and the main process's
memory: before the records exist, with them (the metadata), and its peak (VmHWM) during
the download. What the download adds beyond the metadata stays the same from N/5 to N when
nothing is kept per image.

``--rerun`` instead times a re-run over the ``--images`` photos already on disk (no URL
fetched, every image checked from its header and last bytes), the whole call, best of
``--repeats``.

    .venv/bin/python bench/download_bench.py [--images 2000] [--delay-ms 100] [--repeats 5]
    .venv/bin/python bench/download_bench.py --scale 100000
    .venv/bin/python bench/download_bench.py --rerun --images 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib.acquire.competition import ImageRecord  # noqa: E402
from lib.acquire.download import (  # noqa: E402
    DownloadSettings,
    download_competition,
    worker_preload,
)
from lib.acquire.fetch import fetching  # noqa: E402
from lib.acquire.resize import ImageLimits, prepare_image  # noqa: E402
from lib.common.params import read_params_file  # noqa: E402
from lib.common.pools import context, process_pool, set_up_decode_worker, worker_count  # noqa: E402

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
PHOTOS = CACHE / "download_photos"  # the served photos
SMALL = CACHE / "download_small"  # the scale run's small images
DISK_OUT = CACHE / "download_out"
SHM = Path("/dev/shm")
SHM_ROOM = 4 << 30  # bytes free on the tmpfs to use it: a run writes about 0.6 GB
OUT = DISK_OUT  # every run's output, deleted when the benchmark ends; main() sets it (--out)
I2D_VENV = CACHE / "venv-img2dataset"
I2D_VERSION = "1.47.0"
QUALITY = 90
SMALL_COUNT = 64




def default_settings(**overrides) -> DownloadSettings:
    """The downloader's settings from params.yaml, with `overrides`."""
    root = Path(__file__).resolve().parent.parent
    return DownloadSettings.from_params(read_params_file(root / "params.yaml"), **overrides)


# ---------------------------------------------------------------------------------------------
# the photos


def _sources() -> list[Image.Image]:
    from sklearn.datasets import load_sample_image  # real photos bundled with scikit-learn

    return [Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]


def _mosaic(sources: list[Image.Image], rng: np.random.Generator, size: tuple[int, int]
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
            scaled = source.resize((round(source.width * scale), round(source.height * scale)),
                                   Image.Resampling.BICUBIC)
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
                path, quality=QUALITY)
    return paths


# ---------------------------------------------------------------------------------------------
# the server: its own process, so it never competes for our GIL


_STATUS_OK = b"HTTP/1.1 200 OK\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_CLOSE = b"Connection: close\r\n"


def _serve(folders: list[str], ready: multiprocessing.connection.Connection) -> None:
    """The server process: HTTP/1.1 (keep-alive, or ``Connection: close`` as urllib asks) on
    a plain asyncio protocol, every response built once in memory, sent in one write."""
    responses = {path.name: _response(path.read_bytes()) for folder in folders
                 for path in sorted(Path(folder).glob("*.jpg"))}
    small = [responses[f"{i}.jpg"] for i in range(SMALL_COUNT) if f"{i}.jpg" in responses]

    def lookup(target: bytes) -> tuple[bytes, float]:
        # /<kind>/<delay_ms>/<name>: p = the photos by name, s = the small images in turn
        kind, delay, name = (target.decode("latin-1").split("/") + ["", "", ""])[1:4]
        if kind not in ("p", "s") or not delay.isdigit():
            return _NOT_FOUND, 0.0
        if kind == "p":
            response = responses.get(name, _NOT_FOUND)
        else:
            stem = name.partition(".")[0]
            response = small[int(stem) % len(small)] if stem.isdigit() else _NOT_FOUND
        return response, int(delay) / 1000

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _PhotoProtocol(lookup), "127.0.0.1", 0,
                                          backlog=4096)
        ready.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()  # until terminated

    asyncio.run(main())


def _response(body: bytes) -> bytes:
    return (_STATUS_OK + b"Content-Type: image/jpeg\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


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
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            request_line, _, headers = head.partition(b"\r\n")
            parts = request_line.split(b" ")
            close = (len(parts) != 3 or parts[2] != b"HTTP/1.1"
                     or b"connection: close" in headers.lower())
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

    def __init__(self, *folders: Path) -> None:
        receive, send = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.get_context("spawn").Process(
            target=_serve, args=([str(folder) for folder in folders], send), daemon=True)
        self.process.start()
        send.close()  # the child's end: if the child dies before it is ready, recv() raises
        try:
            self.port = receive.recv()
        except EOFError:
            self.process.join()
            raise RuntimeError(f"the benchmark's HTTP server process exited with code "
                               f"{self.process.exitcode} before it was ready") from None
        finally:
            receive.close()

    def url(self, kind: str, delay_ms: int, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{delay_ms}/{name}"

    def close(self) -> None:
        self.process.terminate()
        self.process.join()


@contextlib.contextmanager
def serving(*folders: Path) -> Iterator[Server]:
    """The server over ``folders`` for the block; OUT is emptied before (an interrupted run's
    leftovers) and deleted after."""
    shutil.rmtree(OUT, ignore_errors=True)
    server = Server(*folders)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(OUT, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the contenders


LIMITS = ImageLimits(max_side=256, quality=QUALITY)


def _fetch_and_shrink(job: tuple[str, str, ImageLimits]) -> bool:
    """(a) and (b): one blocking request, then the same validation and shrink as ours."""
    url, target, limits = job
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    prepared = prepare_image(body, limits)
    if prepared.data is None:
        return False
    Path(target).write_bytes(prepared.data)
    return True


def _jobs(urls: list[str], out: Path, limits: ImageLimits) -> list[tuple[str, str, ImageLimits]]:
    return [(url, str(out / f"{i}.jpg"), limits) for i, url in enumerate(urls)]


def sequential(urls: list[str], out: Path, limits: ImageLimits) -> int:
    return sum(map(_fetch_and_shrink, _jobs(urls, out, limits)))


def pool20(urls: list[str], out: Path, limits: ImageLimits) -> int:
    # fork, as the 2018 downloader did (Linux's default): cheap to start, and this process runs
    # no threads yet when (b) runs
    with multiprocessing.get_context("fork").Pool(20) as pool:
        return sum(pool.imap_unordered(_fetch_and_shrink, _jobs(urls, out, limits)))


def ours(urls: list[str], out: Path, limits: ImageLimits, concurrency: int = 128
         ) -> dict[str, object]:
    records = [ImageRecord("test", i, (url,), None) for i, url in enumerate(urls)]
    settings = default_settings(max_side=limits.max_side, jpeg_quality=limits.quality,
                                concurrency=concurrency, per_host=concurrency)
    result = download_competition({"test": records}, competition_dir=out, images_dir=out,
                                  settings=settings)
    return result.report


async def _fetch_all(urls: list[str], concurrency: int) -> int:
    """(g): every URL through lib.acquire.fetch on one client, as ours fetches; bodies dropped."""
    options = default_settings().fetch_options(concurrency=concurrency, per_host=concurrency)
    async with fetching(BENCH, **options) as fetch:
        pending = iter(urls)

        async def worker() -> int:
            return sum([(await fetch(url))[0] is not None for url in pending])

        return sum(await asyncio.gather(*[worker() for _ in range(concurrency)]))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _shrink_files(paths: list[str], limits: ImageLimits) -> int:
    return sum(prepare_image(Path(path).read_bytes(), limits).data is not None
               for path in paths)


def ceiling(paths: list[Path], limits: ImageLimits, workers: int) -> tuple[int, float]:
    """(e): decode + shrink + encode of the same files by a plain pool, no network, no writes;
    images done and seconds, the pool's start-up not counted (ours counts its own)."""
    chunks = [[str(path) for path in paths[i:i + 16]] for i in range(0, len(paths), 16)]
    with process_pool(workers, initializer=set_up_decode_worker) as pool:
        pool.map(abs, range(workers * 4))  # every worker started
        seconds, done = timed(pool.starmap, _shrink_files, [(chunk, limits) for chunk in chunks])
    return sum(done), seconds


_I2D_DRIVER = """
import json, sys, time
import img2dataset
start = time.perf_counter()
img2dataset.download(**json.loads(sys.argv[1]))
print("I2D_SECONDS", time.perf_counter() - start)
"""


def img2dataset_ready() -> str | None:
    """None when the img2dataset venv works (made here if missing), else why not."""
    python = I2D_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {I2D_VENV} with img2dataset=={I2D_VERSION} (once)", file=sys.stderr)
        steps = [[sys.executable, "-m", "venv", str(I2D_VENV)],
                 [str(python), "-m", "pip", "install", "--quiet", f"img2dataset=={I2D_VERSION}"]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode:
                shutil.rmtree(I2D_VENV, ignore_errors=True)
                return f"`{' '.join(step[-3:])}` failed: {done.stderr.strip()[-300:]}"
    check = subprocess.run([str(python), "-c", "import img2dataset"], capture_output=True,
                           text=True)
    if check.returncode:
        return f"import img2dataset failed: {check.stderr.strip()[-300:]}"
    return None


def img2dataset(urls: list[str], out: Path, limits: ImageLimits, processes: int,
                threads: int) -> tuple[int, float, float]:
    """(c): images written, seconds from its first shard's start to its last shard's end (its
    own count, as it logs images/s; the start of its processes not counted), and the whole
    img2dataset.download() call's seconds (its imports not counted)."""
    out.mkdir(parents=True, exist_ok=True)
    url_list = out / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    # shards of a quarter of a process's share, so every process stays busy to the end
    per_shard = max(1, len(urls) // (4 * processes))
    options = dict(url_list=str(url_list), output_folder=str(out / "images"),
                   processes_count=processes, thread_count=threads, image_size=limits.max_side,
                   resize_mode="keep_ratio_largest", resize_only_if_bigger=True,
                   encode_quality=limits.quality, encode_format="jpg", output_format="files",
                   input_format="txt", number_sample_per_shard=per_shard, timeout=30,
                   retries=0, compute_hash=None, extract_exif=False, enable_wandb=False,
                   distributor="multiprocessing", incremental_mode="incremental")
    done = subprocess.run([str(I2D_VENV / "bin" / "python"), "-c", _I2D_DRIVER,
                           json.dumps(options)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"img2dataset failed: {done.stderr.strip()[-2000:]}")
    call_seconds = float(done.stdout.split("I2D_SECONDS")[-1])
    shards = [json.loads(path.read_text()) for path in (out / "images").glob("*_stats.json")]
    span = max(s["end_time"] for s in shards) - min(s["start_time"] for s in shards)
    written = sum(1 for _ in (out / "images").rglob("*.jpg"))
    return written, span, call_seconds


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
    best = max(((len(point), index, kind) for index, (point, kind) in enumerate(mounts)
                if path.is_relative_to(point)), default=None)
    return best[2] if best else "unknown"


def where_written() -> str:
    return f"the contenders write to {OUT} ({file_system(OUT)})"


def fresh(name: str) -> Path:
    """A new, empty output folder for one contender's run. Nothing is deleted until the whole
    benchmark ends: on a disk, files deleted now would slow the next writer (``default_out``)."""
    folder = OUT / f"{name}_{next(_RUNS)}"
    folder.mkdir(parents=True)
    return folder


_RUNS = itertools.count()


# ---------------------------------------------------------------------------------------------
# the runs


def _photos_limits_i2d(args: argparse.Namespace) -> tuple[list[Path], ImageLimits, str | None]:
    """The benchmark photos, the shrink settings, and why img2dataset cannot run (or None)."""
    paths = make_photos(args.images)[: args.images]
    limits = ImageLimits(max_side=args.max_side, quality=QUALITY)
    i2d_problem = "skipped (--skip-img2dataset)" if args.skip_img2dataset else img2dataset_ready()
    return paths, limits, i2d_problem


def compare(args: argparse.Namespace) -> None:
    paths, limits, i2d_problem = _photos_limits_i2d(args)
    sizes = [Image.open(path).size for path in paths]
    megapixels = np.mean([w * h for w, h in sizes]) / 1e6
    kilobytes = np.mean([path.stat().st_size for path in paths]) / 1e3
    workers = worker_count()
    n_seq = min(args.sequential, len(paths))
    names = {"a": f"(a) sequential urllib (first {n_seq} URLs)",
             "b": "(b) multiprocessing.Pool(20) of urllib",
             "c": f"(c) img2dataset {args.i2d_processes} proc x {args.i2d_threads} threads",
             "d": "(d) ours: download_competition, whole call",
             "d2": "(d) ours, first request to last image stored",
             "e": f"(e) decode+resize ceiling, {workers} processes, no network",
             "f": "(f) ours, no delay, whole call",
             "f2": "(f) ours, no delay, first request to last stored",
             "g": "(g) the network alone: lib.acquire.fetch, bodies dropped"}
    load_before = os.getloadavg()
    with serving(PHOTOS) as server:
        urls = [server.url("p", args.delay_ms, path.name) for path in paths]
        fast_urls = [server.url("p", 0, path.name) for path in paths]
        contenders = {
            "b": lambda: _timed_count(pool20, urls, fresh("pool20"), limits),
            "d": lambda: _ours_timed(results, "d", urls, fresh("ours"), limits),
            "e": lambda: ceiling(paths, limits, workers),
            "f": lambda: _ours_timed(results, "f", fast_urls, fresh("ours_fast"), limits),
            "g": lambda: _network_timed(network, fast_urls, server.process.pid),
        }
        network: list[tuple[float, float]] = []  # (g)'s CPU per image: ours, the server's
        i2d_calls: list[float] = []
        if i2d_problem is None:
            def run_img2dataset() -> tuple[int, float]:
                written, seconds, call = img2dataset(urls, fresh("img2dataset"), limits,
                                                     args.i2d_processes, args.i2d_threads)
                i2d_calls.append(call)
                return written, seconds
            contenders["c"] = run_img2dataset
        # (a) is network-bound (one request at a time): one run. The others take turns, round
        # after round, and each keeps its best: a noisy neighbour on the machine then slows
        # every contender alike instead of whichever ran at the wrong moment.
        results = {"a": [_timed_count(sequential, urls[:n_seq], fresh("sequential"), limits)]}
        for _ in range(args.repeats):
            for key, contender in sorted(contenders.items()):
                results.setdefault(key, []).append(contender())
    load_after = os.getloadavg()
    best = {key: min(runs, key=lambda run: run[1]) for key, runs in results.items()}
    rate = {key: written / seconds for key, (written, seconds) in best.items()}
    urls_of = {key: n_seq if key == "a" else len(paths) for key in best}

    print(f"\n{len(paths)} photo JPEGs, longer side 400-1300 px (mean {megapixels:.2f} MP, "
          f"{kilobytes:.0f} KB), from an HTTP server on 127.0.0.1; max_side={args.max_side}, "
          f"quality {QUALITY}; {workers} cores; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; best of {args.repeats} runs except (a); "
          f"{where_written()}")
    header = f"{'contender':52s} {'URLs':>5s} {'written':>7s} {'seconds':>7s} {'images/s':>8s}"
    # each contender beside ours timed the same way: (c) as img2dataset times itself, against
    # ours from its first request; the others, whole calls both
    versus = {"a": "d", "b": "d", "c": "d2", "d": "d", "d2": "d2"}
    print(f"\nwith {args.delay_ms} ms per request\n{header} {'ours vs it':>10s}")
    for key in ("a", "b", "c", "d", "d2"):
        if key in best:
            written, seconds = best[key]
            print(f"{names[key]:52s} {urls_of[key]:5d} {written:7d} {seconds:7.2f} "
                  f"{rate[key]:8.1f} {rate[versus[key]] / rate[key]:9.2f}x")
    if i2d_problem is not None:
        print(f"{names['c']}: not run: {i2d_problem}")
    else:
        i2d_whole = len(urls) / min(i2d_calls)
        print(f"(c) is timed as img2dataset times itself, from its first shard's start to its "
              f"last shard's end,\n    beside ours from its first request to its last image "
              f"stored; its whole download() call\n    took {min(i2d_calls):.2f} s at best "
              f"({i2d_whole:.1f} images/s: ours whole call {rate['d'] / i2d_whole:.2f}x)")
    print(f"\nno delay (CPU-bound)\n{header} {'share':>10s}")
    for key in ("e", "f", "f2", "g"):
        written, seconds = best[key]
        share = f"{rate[key] / rate['e']:10.1%}" if key != "g" else ""  # (g) shrinks nothing
        print(f"{names[key]:52s} {urls_of[key]:5d} {written:7d} {seconds:7.2f} "
              f"{rate[key]:8.1f} {share}")
    shrink_ms = 1000 * workers / rate["e"]  # the ceiling keeps its cores busy
    client_ms, server_ms = (1000 * min(column) for column in zip(*network, strict=True))
    bound = shrink_ms / (shrink_ms + client_ms + server_ms)
    print(f"CPU per image: decode+shrink {shrink_ms:.2f} ms (the ceiling), the network "
          f"{client_ms + server_ms:.2f} ms ((g): client {client_ms:.2f}, server "
          f"{server_ms:.2f});\n    so fetching and shrinking on these {workers} cores reaches "
          f"at most {bound:.1%} of the ceiling")
    # how fast this machine is today: ours is CPU-bound even with the delay, img2dataset less so
    print(f"machine speed: one core decodes and shrinks {1000 / shrink_ms:.0f} photos/s")
    print(f"\nours / Pool(20), whole calls: {rate['d'] / rate['b']:.2f}x (target >= 1.5x)")
    if "c" in rate:
        print(f"ours / img2dataset: {rate['d2'] / rate['c']:.2f}x timed as it times itself, "
              f"{rate['d'] / i2d_whole:.2f}x whole calls (target >= 2x)")
    print(f"ours with no delay as a share of the ceiling, best against best: "
          f"{rate['f'] / rate['e']:.1%} whole call, {rate['f2'] / rate['e']:.1%} without its "
          f"start-up (target >= 80%; at most {bound:.1%} here)")
    for key, how in (("f", "whole call"), ("f2", "without its start-up")):
        shares = _round_ratios(results[key], results["e"])
        print(f"    round by round, {how}: median {statistics.median(shares):.1%} ("
              f"{', '.join(f'{share:.1%}' for share in shares)})")
    print("\nround by round with the delay (each contender against ours in the same round):")
    against = [("Pool(20), whole calls", results["d"], results["b"])]
    if "c" in results:
        against += [("img2dataset, timed as it times itself", results["d2"], results["c"]),
                  ("img2dataset, whole calls", results["d"],
                   [(len(urls), seconds) for seconds in i2d_calls])]
    for what, ours_runs, their_runs in against:
        ratios = _round_ratios(ours_runs, their_runs)
        print(f"    ours / {what}: median {statistics.median(ratios):.2f}x "
              f"({', '.join(f'{ratio:.2f}x' for ratio in ratios)})")


def _round_ratios(ours: list[tuple[int, float]], theirs: list[tuple[int, float]]
                  ) -> list[float]:
    """Ours' images/s over theirs', round by round: two runs a minute apart at most, so the
    machine's drift between rounds cancels out."""
    return [(done / seconds) / (their_done / their_seconds) for (done, seconds), (
        their_done, their_seconds) in zip(ours, theirs, strict=True)]


def _ours_timed(results: dict[str, list[tuple[int, float]]], key: str, *args
                ) -> tuple[int, float]:
    """Ours timed two ways: the whole call (returned), and as img2dataset times itself, from
    the first request to the last image stored (kept under ``key + "2"``)."""
    seconds, report = timed(ours, *args)
    results.setdefault(f"{key}2", []).append((report["downloaded"], report["fetching_s"]))
    return report["downloaded"], seconds


def _network_timed(network: list[tuple[float, float]], urls: list[str], server_pid: int,
                   concurrency: int = 128) -> tuple[int, float]:
    """(g) as a contender: (bodies received, seconds); the CPU per image of this process and
    of the server appended to ``network``."""
    cpu, server_cpu, start = time.process_time(), _cpu_seconds(server_pid), time.perf_counter()
    received = asyncio.run(_fetch_all(urls, concurrency))
    seconds = time.perf_counter() - start
    network.append(((time.process_time() - cpu) / len(urls),
                    (_cpu_seconds(server_pid) - server_cpu) / len(urls)))
    return received, seconds


def _timed_count(fn, *args) -> tuple[int, float]:
    seconds, written = timed(fn, *args)
    return written, seconds


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def scale_child(args: argparse.Namespace) -> None:
    """One scale run in this fresh process; prints one JSON line."""
    before = _memory_kb("VmRSS")
    records = [ImageRecord("test", i, (f"http://127.0.0.1:{args.port}/s/0/{i}.jpg",), None)
               for i in range(args.scale_child)]
    with_records = _memory_kb("VmRSS")
    out = fresh(f"scale_{args.scale_child}")
    settings = default_settings(max_side=args.max_side, per_host=128)
    seconds, result = timed(download_competition, {"test": records}, competition_dir=out,
                            images_dir=out, settings=settings)
    # VmHWM, not ru_maxrss: a process started by subprocess (vfork, then exec) inherits in
    # ru_maxrss the peak of the process that started it
    peak = _memory_kb("VmHWM")
    print(json.dumps({"n": args.scale_child, "seconds": seconds,
                      "downloaded": result.report["downloaded"], "before_kb": before,
                      "with_records_kb": with_records, "peak_kb": peak}))


def scale(args: argparse.Namespace) -> None:
    make_small()
    results = []
    with serving(SMALL) as server:
        for n in (args.scale // 5, args.scale):
            done = subprocess.run(
                [sys.executable, __file__, "--scale-child", str(n), "--port", str(server.port),
                 "--max-side", str(args.max_side), "--out", str(OUT)],
                capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\nscale: URLs of {SMALL_COUNT} small JPEGs (64-200 px, kept byte for byte), no "
          f"delay, a fresh process per run; memory of the main process (RSS); "
          f"{where_written()}")
    print(f"{'URLs':>7s} {'written':>7s} {'seconds':>7s} {'images/s':>8s} {'metadata MB':>11s} "
          f"{'peak MB':>8s} {'peak - metadata MB':>18s}")
    for r in results:
        metadata = (r["with_records_kb"] - r["before_kb"]) / 1024
        beyond = (r["peak_kb"] - r["with_records_kb"]) / 1024
        print(f"{r['n']:7d} {r['downloaded']:7d} {r['seconds']:7.1f} "
              f"{r['downloaded'] / r['seconds']:8.1f} {metadata:11.1f} {r['peak_kb'] / 1024:8.1f} "
              f"{beyond:18.1f}")
    small, large = results
    extra = large["n"] - small["n"]
    per_record = lambda key_a, key_b: ((large[key_a] - large[key_b]) - (  # noqa: E731
        small[key_a] - small[key_b])) * 1024 / extra
    print(f"per extra URL: metadata {per_record('with_records_kb', 'before_kb'):.0f} bytes, "
          f"download beyond the metadata {per_record('peak_kb', 'with_records_kb'):.0f} bytes")


def rerun(args: argparse.Namespace) -> None:
    """A download whose every image is already on disk, in 128 label folders, as a re-run of
    ``dvc repro`` finds them: what checking them costs."""
    photos = make_photos(args.images)
    shutil.rmtree(OUT, ignore_errors=True)
    try:
        images = fresh("rerun") / "images"
        records = []
        for i, path in enumerate(photos):
            folder = images / "train" / f"{1 + i % 128:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / f"{i}.jpg")
            records.append(ImageRecord("train", i, ("http://127.0.0.1:9/never.jpg",), 1 + i % 128))
        best = math.inf
        for _ in range(args.repeats):
            seconds, result = timed(download_competition, {"train": records},
                                    competition_dir=OUT, images_dir=images,
                                    settings=default_settings())
            assert result.report["skipped_existing"] == len(records), result.report
            best = min(best, seconds)
    finally:
        shutil.rmtree(OUT, ignore_errors=True)
    print(f"\nrerun: {len(records)} photos on disk, all skipped after the check; best of "
          f"{args.repeats} whole calls (starting the workers included): {best:.2f} s, "
          f"{len(records) / best:.0f} images/s, {best / len(records) * 1e6:.0f} us per image; "
          f"{where_written()}")


def pairs(args: argparse.Namespace) -> None:
    """Only the two ratios the targets are about, each from N runs back to back with ours:
    the ceiling then ours with no delay, and img2dataset then ours with the delay (timed both
    ways); the ratios' median, quartiles and range. Pairs cancel the machine's drift; their
    spread shows how far one run can be trusted."""
    paths, limits, i2d_problem = _photos_limits_i2d(args)
    runs: dict[str, list[tuple[int, float]]] = {}  # (images, seconds) per run, in pair order

    def run(key: str, images: int, seconds: float) -> None:
        runs.setdefault(key, []).append((images, seconds))

    with serving(PHOTOS) as server:
        fast_urls = [server.url("p", 0, path.name) for path in paths]
        urls = [server.url("p", args.delay_ms, path.name) for path in paths]
        for _ in range(args.pairs):
            run("ceiling", *ceiling(paths, limits, worker_count()))
            report = ours(fast_urls, fresh("ours_fast"), limits)
            run("ours_fast", report["downloaded"], report["fetching_s"])
        for _ in range(args.pairs if i2d_problem is None else 0):
            written, span, call = img2dataset(urls, fresh("img2dataset"), limits,
                                              args.i2d_processes, args.i2d_threads)
            run("i2d_own", written, span)
            run("i2d_whole", len(urls), call)
            whole, report = timed(ours, urls, fresh("ours"), limits)
            run("ours_own", report["downloaded"], report["fetching_s"])
            run("ours_whole", report["downloaded"], whole)
    ratios = {"share": _round_ratios(runs["ours_fast"], runs["ceiling"])}
    if i2d_problem is None:
        ratios |= {"own": _round_ratios(runs["ours_own"], runs["i2d_own"]),
                   "whole": _round_ratios(runs["ours_whole"], runs["i2d_whole"])}
    names = {"share": "ours with no delay / the ceiling (first request to last stored)",
             "own": f"ours / img2dataset, {args.delay_ms} ms, timed as it times itself",
             "whole": f"ours / img2dataset, {args.delay_ms} ms, whole calls"}
    print(f"\n{args.pairs} pairs, each run right after the other; targets: share >= 0.80, "
          f"img2dataset >= 2x; {where_written()}")
    for key, values in ratios.items():
        quartiles = statistics.quantiles(values, n=4)
        print(f"{names[key]:66s} median {statistics.median(values):.2f}, quartiles "
              f"{quartiles[0]:.2f}-{quartiles[2]:.2f}, range {min(values):.2f}-{max(values):.2f}")
    rates = {key: statistics.median(done / seconds for done, seconds in values)
             for key, values in runs.items()}
    print("median images/s: " + ", ".join(f"{key} {rate:.0f}" for key, rate in rates.items()))
    if i2d_problem is not None:
        print(f"img2dataset: not run: {i2d_problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--delay-ms", type=int, default=100, help="server delay per request")
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--sequential", type=int, default=200,
                        help="URLs for (a), the sequential baseline")
    parser.add_argument("--i2d-processes", type=int, default=2)
    parser.add_argument("--i2d-threads", type=int, default=64)
    parser.add_argument("--skip-img2dataset", action="store_true")
    parser.add_argument("--repeats", type=int, default=5,
                        help="rounds of (b)-(g); each keeps its best")
    parser.add_argument("--pairs", type=int, default=0,
                        help="instead: N back-to-back pairs for the two ratios the targets "
                             "are about (ceiling share, img2dataset), with their spread")
    parser.add_argument("--scale", type=int, default=0,
                        help="instead: the scale run with N URLs of small images (and N/5)")
    parser.add_argument("--rerun", action="store_true",
                        help="instead: time a re-run over --images photos already on disk")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder the contenders write to (default: on /dev/shm when it has "
                             "room, else bench/.cache/download_out); emptied when it ends")
    parser.add_argument("--scale-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global OUT
    OUT = (args.out or default_out()).resolve()
    # The forkserver, whichever contender starts it (the ceiling's pool, in --pairs), imports
    # what ours' workers run, as in the download stage; else they would import it themselves
    # while ours is timed
    context(preload=worker_preload())
    if args.scale_child:
        scale_child(args)
    elif args.scale:
        scale(args)
    elif args.rerun:
        rerun(args)
    elif args.pairs:
        if args.pairs < 2:
            parser.error(f"--pairs must be at least 2 (quartiles need two pairs), not {args.pairs}")
        pairs(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
