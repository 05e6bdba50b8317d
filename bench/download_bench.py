"""Benchmark the downloader against sequential urllib, a Pool(20) of urllib, img2dataset and the
decode+resize ceiling, all fetching 2,000 photos (``--images``) from one loopback server
(bench/loopback.py) that answers each after ``--delay-ms`` (default 100 ms, a far host).

Every contender shrinks to ``--max-side`` (256), keeping the aspect, and writes JPEGs at
quality 90:
  (a) sequential urllib, on the first ``--sequential`` URLs only (0.1 s each: all 2,000 would
      take minutes), then lib.acquire.resize.prepare_image in the same process;
  (b) multiprocessing.Pool(20) of urllib (the 2018 winners' downloader), each worker fetching,
      shrinking with lib.acquire.resize.prepare_image (the same code as ours) and writing;
  (c) img2dataset (bench/img2dataset_contender.py), ``--i2d-processes`` x ``--i2d-threads``;
      timed as it times itself (first shard's start to last shard's end, so the start of its
      processes is not counted), its whole call printed beside;
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

Memory on long lists and re-runs over images on disk: bench/download_scale_bench.py.

    .venv/bin/python bench/download_bench.py [--images 2000] [--delay-ms 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
import urllib.request
from pathlib import Path

import numpy as np
from img2dataset_contender import img2dataset, img2dataset_ready
from loopback import (
    BENCH,
    PHOTOS,
    QUALITY,
    default_settings,
    fresh,
    make_photos,
    serving,
    timed,
    use_out,
    where_written,
)
from PIL import Image

from lib.acquire.download import download_competition, worker_preload
from lib.acquire.fetch import fetching
from lib.acquire.oskit import keep_freed_memory
from lib.acquire.records import ImageRecord
from lib.acquire.resize import ImageLimits, prepare_image
from lib.common.pools import context, process_pool, set_up_decode_worker, worker_count

# ---------------------------------------------------------------------------------------------
# the contenders


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


def ours(
    urls: list[str], out: Path, limits: ImageLimits, concurrency: int = 128
) -> dict[str, object]:
    records = [ImageRecord("test", i, (url,), None) for i, url in enumerate(urls)]
    settings = default_settings(
        max_side=limits.max_side,
        jpeg_quality=limits.quality,
        concurrency=concurrency,
        per_host=concurrency,
    )
    result = download_competition(
        {"test": records}, competition_dir=out, images_dir=out, settings=settings
    )
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
    return sum(prepare_image(Path(path).read_bytes(), limits).data is not None for path in paths)


def _set_up_ceiling_worker() -> None:
    set_up_decode_worker()  # as ours' download workers are set up
    keep_freed_memory()


def ceiling(paths: list[Path], limits: ImageLimits, workers: int) -> tuple[int, float]:
    """(e): decode + shrink + encode of the same files by a plain pool, no network, no writes;
    images done and seconds, the pool's start-up not counted (ours counts its own)."""
    chunks = [[str(path) for path in paths[i : i + 16]] for i in range(0, len(paths), 16)]
    with process_pool(workers, initializer=_set_up_ceiling_worker) as pool:
        pool.map(abs, range(workers * 4))  # every worker started
        seconds, done = timed(pool.starmap, _shrink_files, [(chunk, limits) for chunk in chunks])
    return sum(done), seconds


# ---------------------------------------------------------------------------------------------
# the comparison


def compare(args: argparse.Namespace) -> None:
    paths = make_photos(args.images)[: args.images]
    limits = ImageLimits(max_side=args.max_side, quality=QUALITY)
    i2d_problem = "skipped (--skip-img2dataset)" if args.skip_img2dataset else img2dataset_ready()
    sizes = [Image.open(path).size for path in paths]
    megapixels = np.mean([w * h for w, h in sizes]) / 1e6
    kilobytes = np.mean([path.stat().st_size for path in paths]) / 1e3
    workers = worker_count()
    n_seq = min(args.sequential, len(paths))
    names = {
        "a": f"(a) sequential urllib (first {n_seq} URLs)",
        "b": "(b) multiprocessing.Pool(20) of urllib",
        "c": f"(c) img2dataset {args.i2d_processes} proc x {args.i2d_threads} threads",
        "d": "(d) ours: download_competition, whole call",
        "d2": "(d) ours, first request to last image stored",
        "e": f"(e) decode+resize ceiling, {workers} processes, no network",
        "f": "(f) ours, no delay, whole call",
        "f2": "(f) ours, no delay, first request to last stored",
        "g": "(g) the network alone: lib.acquire.fetch, bodies dropped",
    }
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
                written, seconds, call = img2dataset(
                    urls, fresh("img2dataset"), limits, args.i2d_processes, args.i2d_threads
                )
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

    print(
        f"\n{len(paths)} photo JPEGs, longer side 400-1300 px (mean {megapixels:.2f} MP, "
        f"{kilobytes:.0f} KB), from an HTTP server on 127.0.0.1; max_side={args.max_side}, "
        f"quality {QUALITY}; {workers} cores; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; best of {args.repeats} runs except (a); "
        f"{where_written()}"
    )
    header = f"{'contender':52s} {'URLs':>5s} {'written':>7s} {'seconds':>7s} {'images/s':>8s}"
    # each contender beside ours timed the same way: (c) as img2dataset times itself, against
    # ours from its first request; the others, whole calls both
    versus = {"a": "d", "b": "d", "c": "d2", "d": "d", "d2": "d2"}
    print(f"\nwith {args.delay_ms} ms per request\n{header} {'ours vs it':>10s}")
    for key in ("a", "b", "c", "d", "d2"):
        if key in best:
            written, seconds = best[key]
            print(
                f"{names[key]:52s} {urls_of[key]:5d} {written:7d} {seconds:7.2f} "
                f"{rate[key]:8.1f} {rate[versus[key]] / rate[key]:9.2f}x"
            )
    if i2d_problem is not None:
        print(f"{names['c']}: not run: {i2d_problem}")
    else:
        i2d_whole = len(urls) / min(i2d_calls)
        print(
            f"(c) is timed as img2dataset times itself, from its first shard's start to its "
            f"last shard's end,\n    beside ours from its first request to its last image "
            f"stored; its whole download() call\n    took {min(i2d_calls):.2f} s at best "
            f"({i2d_whole:.1f} images/s: ours whole call {rate['d'] / i2d_whole:.2f}x)"
        )
    print(f"\nno delay (CPU-bound)\n{header} {'share':>10s}")
    for key in ("e", "f", "f2", "g"):
        written, seconds = best[key]
        share = f"{rate[key] / rate['e']:10.1%}" if key != "g" else ""  # (g) shrinks nothing
        print(
            f"{names[key]:52s} {urls_of[key]:5d} {written:7d} {seconds:7.2f} "
            f"{rate[key]:8.1f} {share}"
        )
    shrink_ms = 1000 * workers / rate["e"]  # the ceiling keeps its cores busy
    client_ms, server_ms = (1000 * min(column) for column in zip(*network, strict=True))
    bound = shrink_ms / (shrink_ms + client_ms + server_ms)
    print(
        f"CPU per image: decode+shrink {shrink_ms:.2f} ms (the ceiling), the network "
        f"{client_ms + server_ms:.2f} ms ((g): client {client_ms:.2f}, server "
        f"{server_ms:.2f});\n    so fetching and shrinking on these {workers} cores reaches "
        f"at most {bound:.1%} of the ceiling"
    )
    # how fast this machine is today: ours is CPU-bound even with the delay, img2dataset less so
    print(f"machine speed: one core decodes and shrinks {1000 / shrink_ms:.0f} photos/s")
    print(f"\nours / Pool(20), whole calls: {rate['d'] / rate['b']:.2f}x (target >= 1.5x)")
    if "c" in rate:
        print(
            f"ours / img2dataset: {rate['d2'] / rate['c']:.2f}x timed as it times itself, "
            f"{rate['d'] / i2d_whole:.2f}x whole calls (target >= 2x)"
        )
    print(
        f"ours with no delay as a share of the ceiling, best against best: "
        f"{rate['f'] / rate['e']:.1%} whole call, {rate['f2'] / rate['e']:.1%} without its "
        f"start-up (target >= 80%; at most {bound:.1%} here)"
    )
    for key, how in (("f", "whole call"), ("f2", "without its start-up")):
        shares = _round_ratios(results[key], results["e"])
        print(
            f"    round by round, {how}: median {statistics.median(shares):.1%} ("
            f"{', '.join(f'{share:.1%}' for share in shares)})"
        )
    print("\nround by round with the delay (each contender against ours in the same round):")
    against = [("Pool(20), whole calls", results["d"], results["b"])]
    if "c" in results:
        against += [
            ("img2dataset, timed as it times itself", results["d2"], results["c"]),
            (
                "img2dataset, whole calls",
                results["d"],
                [(len(urls), seconds) for seconds in i2d_calls],
            ),
        ]
    for what, ours_runs, their_runs in against:
        ratios = _round_ratios(ours_runs, their_runs)
        print(
            f"    ours / {what}: median {statistics.median(ratios):.2f}x "
            f"({', '.join(f'{ratio:.2f}x' for ratio in ratios)})"
        )


def _round_ratios(ours: list[tuple[int, float]], theirs: list[tuple[int, float]]) -> list[float]:
    """Ours' images/s over theirs', round by round: two runs a minute apart at most, so the
    machine's drift between rounds cancels out."""
    return [
        (done / seconds) / (their_done / their_seconds)
        for (done, seconds), (their_done, their_seconds) in zip(ours, theirs, strict=True)
    ]


def _ours_timed(results: dict[str, list[tuple[int, float]]], key: str, *args) -> tuple[int, float]:
    """Ours timed two ways: the whole call (returned), and as img2dataset times itself, from
    the first request to the last image stored (kept under ``key + "2"``)."""
    seconds, report = timed(ours, *args)
    results.setdefault(f"{key}2", []).append((report["downloaded"], report["fetching_s"]))
    return report["downloaded"], seconds


def _network_timed(
    network: list[tuple[float, float]], urls: list[str], server_pid: int, concurrency: int = 128
) -> tuple[int, float]:
    """(g) as a contender: (bodies received, seconds); the CPU per image of this process and
    of the server appended to ``network``."""
    cpu, server_cpu, start = time.process_time(), _cpu_seconds(server_pid), time.perf_counter()
    received = asyncio.run(_fetch_all(urls, concurrency))
    seconds = time.perf_counter() - start
    network.append(
        (
            (time.process_time() - cpu) / len(urls),
            (_cpu_seconds(server_pid) - server_cpu) / len(urls),
        )
    )
    return received, seconds


def _timed_count(fn, *args) -> tuple[int, float]:
    seconds, written = timed(fn, *args)
    return written, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--delay-ms", type=int, default=100, help="server delay per request")
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument(
        "--sequential", type=int, default=200, help="URLs for (a), the sequential baseline"
    )
    parser.add_argument("--i2d-processes", type=int, default=2)
    parser.add_argument("--i2d-threads", type=int, default=64)
    parser.add_argument("--skip-img2dataset", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds of (b)-(g); each keeps its best"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder the contenders write to (default: on /dev/shm when it has "
        "room, else bench/.cache/download_out); emptied when it ends",
    )
    args = parser.parse_args()
    use_out(args.out)
    # The forkserver, whichever contender starts it, imports what ours' workers run, as in the
    # download stage; else they would import it themselves while ours is timed
    context(preload=worker_preload())
    compare(args)


if __name__ == "__main__":
    main()
