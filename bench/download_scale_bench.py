"""The downloader on long lists and on re-runs, against the loopback server (bench/loopback.py).

``--scale N`` downloads N URLs of small images (64-200 px, kept byte for byte) with no delay,
in a fresh process for N/5 and for N, and reports the time and the main process's memory:
before the records exist, with them (the metadata), and its peak (VmHWM) during the download.
What the download adds beyond the metadata stays the same from N/5 to N when nothing is kept
per image.

``--rerun`` times a re-run over ``--images`` photos already on disk (no URL fetched, every
image checked from its header and last bytes), the whole call, best of ``--repeats``.

    .venv/bin/python bench/download_scale_bench.py --scale 100000
    .venv/bin/python bench/download_scale_bench.py --rerun --images 3000
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import loopback
from loopback import (
    SMALL,
    SMALL_COUNT,
    default_settings,
    fresh,
    make_photos,
    make_small,
    serving,
    timed,
    use_out,
    where_written,
)

from lib.acquire.download import download_competition, worker_preload
from lib.acquire.records import ImageRecord
from lib.common.pools import context


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def scale_child(args: argparse.Namespace) -> None:
    """One scale run in this fresh process; prints one JSON line."""
    before = _memory_kb("VmRSS")
    records = [
        ImageRecord("test", i, (f"http://127.0.0.1:{args.port}/s/0/{i}.jpg",), None)
        for i in range(args.scale_child)
    ]
    with_records = _memory_kb("VmRSS")
    out = fresh(f"scale_{args.scale_child}")
    settings = default_settings(max_side=args.max_side, per_host=128)
    seconds, result = timed(
        download_competition,
        {"test": records},
        competition_dir=out,
        images_dir=out,
        settings=settings,
    )
    # VmHWM, not ru_maxrss: a process started by subprocess (vfork, then exec) inherits in
    # ru_maxrss the peak of the process that started it
    peak = _memory_kb("VmHWM")
    print(
        json.dumps(
            {
                "n": args.scale_child,
                "seconds": seconds,
                "downloaded": result.report["downloaded"],
                "before_kb": before,
                "with_records_kb": with_records,
                "peak_kb": peak,
            }
        )
    )


def scale(args: argparse.Namespace) -> None:
    make_small()
    results = []
    with serving(SMALL) as server:
        for n in (args.scale // 5, args.scale):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--scale-child",
                    str(n),
                    "--port",
                    str(server.port),
                    "--max-side",
                    str(args.max_side),
                    "--out",
                    str(loopback.OUT),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"\nscale: URLs of {SMALL_COUNT} small JPEGs (64-200 px, kept byte for byte), no "
        f"delay, a fresh process per run; memory of the main process (RSS); "
        f"{where_written()}"
    )
    print(
        f"{'URLs':>7s} {'written':>7s} {'seconds':>7s} {'images/s':>8s} {'metadata MB':>11s} "
        f"{'peak MB':>8s} {'peak - metadata MB':>18s}"
    )
    for r in results:
        metadata = (r["with_records_kb"] - r["before_kb"]) / 1024
        beyond = (r["peak_kb"] - r["with_records_kb"]) / 1024
        print(
            f"{r['n']:7d} {r['downloaded']:7d} {r['seconds']:7.1f} "
            f"{r['downloaded'] / r['seconds']:8.1f} {metadata:11.1f} {r['peak_kb'] / 1024:8.1f} "
            f"{beyond:18.1f}"
        )
    small, large = results
    extra = large["n"] - small["n"]

    def per_record(key_a: str, key_b: str) -> float:
        grown = (large[key_a] - large[key_b]) - (small[key_a] - small[key_b])
        return grown * 1024 / extra

    print(
        f"per extra URL: metadata {per_record('with_records_kb', 'before_kb'):.0f} bytes, "
        f"download beyond the metadata {per_record('peak_kb', 'with_records_kb'):.0f} bytes"
    )


def rerun(args: argparse.Namespace) -> None:
    """A download whose every image is already on disk, in 128 label folders, as a re-run of
    ``dvc repro`` finds them: what checking them costs."""
    photos = make_photos(args.images)
    shutil.rmtree(loopback.OUT, ignore_errors=True)
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
            seconds, result = timed(
                download_competition,
                {"train": records},
                competition_dir=loopback.OUT,
                images_dir=images,
                settings=default_settings(),
            )
            assert result.report["skipped_existing"] == len(records), result.report
            best = min(best, seconds)
    finally:
        shutil.rmtree(loopback.OUT, ignore_errors=True)
    print(
        f"\nrerun: {len(records)} photos on disk, all skipped after the check; best of "
        f"{args.repeats} whole calls (starting the workers included): {best:.2f} s, "
        f"{len(records) / best:.0f} images/s, {best / len(records) * 1e6:.0f} us per image; "
        f"{where_written()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=int, default=0, help="the scale run with N URLs of small images (and N/5)"
    )
    parser.add_argument(
        "--rerun", action="store_true", help="time a re-run over --images photos already on disk"
    )
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder the downloads write to (default: on /dev/shm when it has "
        "room, else bench/.cache/download_out); emptied when it ends",
    )
    parser.add_argument("--scale-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_out(args.out)
    context(preload=worker_preload())  # the workers' imports in the forkserver, as the stage
    if args.scale_child:
        scale_child(args)
    elif args.scale:
        scale(args)
    elif args.rerun:
        rerun(args)
    else:
        parser.error("choose --scale N or --rerun")


if __name__ == "__main__":
    main()
