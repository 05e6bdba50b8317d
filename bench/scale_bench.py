"""The whole pipeline and the DVC commands a user runs, on an iMaterialist-shaped competition of
N photos served over loopback: time, peak memory and disk per step, and how each grows with N.

For each N of ``--sizes`` (or ``--images``): N unique photo-like JPEGs (bench/scale_data.py,
cached under bench/.cache/scale_photos and reused by every size), a competition of their URLs
(91/3/6 % train/validation/test, 128 classes with a long tail, about 1.5% failing URLs, 2% with
a dead mirror first), served by bench/loopback.py after ``--delay-ms``. A fresh git + DVC
project (this repository's files, params below) then runs, each step timed on its own:

  dvc repro download | stats | folds | train@0 | predict@0 | ensemble   (then git commit)
  dvc status, dvc repro                  nothing changed
  dvc exp run --temp folds -S folds=3    an experiment that re-runs folds only
  dvc exp run --queue folds -S folds=4 + dvc queue start, until done: a queued experiment
  dvc push (a local remote), git clone + dvc pull in the clone

The params: download.max_side 256 (photos shrunk to about 20 KB, as a user would), per_host =
concurrency (one loopback host stands for thousands), folds 2 with train_folds [0], one epoch
at img_size 16 and tta none: the model's own cost is kept small, but no param caps the images
a fold trains on, so train@0 and predict@0 grow with N (half the labelled images each).

Per step: wall seconds; peak RSS, both of the largest single process (wait4's ru_maxrss, exact)
and of the whole process tree summed (psutil, sampled every 0.2 s); disk after the step (the
workspace and the DVC cache, each inode counted once, against the images' own bytes). A queued
experiment's overhead is its wall time minus that of `dvc repro folds` in the workspace.
Results go to bench/.cache/scale_results/<N>-<photo sides>.json; at the end, the markdown table
of every size stored there with the same photo sides, with the growth exponent between the
smallest and the largest N.

    .venv/bin/python bench/scale_bench.py --images 10000
    .venv/bin/python bench/scale_bench.py --sizes 10000 50000 214028 --keep /data/scale
    .venv/bin/python bench/scale_bench.py --table          # the table of the stored results
    .venv/bin/python bench/scale_bench.py --photos-only 2000   # the generation rate alone
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from loopback import CACHE, Server
from scale_data import growth, make_photos, photo_path, serve_extras, write_competition

from lib.common.params import read_params_file

REPO = CACHE.parent.parent
RESULTS = CACHE / "scale_results"
WORK = CACHE / "scale_work"
PIPELINE = ("download", "stats", "folds", "train@0", "predict@0", "ensemble")
BENCH_PARAMS = {
    "competition": "data/scale",
    "folds": 2,
    "train_folds": [0],
    "epochs": 1,
    "img_size": 16,
    "batch_size": 256,
    "tta": "none",
}
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "DVC_NO_ANALYTICS": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


class PeakTree(threading.Thread):
    """The peak of the summed RSS of a process and its descendants, sampled."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self.done = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.done.wait(self.every_s):
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += process.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)


def timed(step: str, args: list[str], cwd: Path, log: Path) -> dict:
    """Run ``args`` with its output appended to ``log``; its wall time and peak RSS."""
    print(f"[{time.strftime('%H:%M:%S')}] {step}: {' '.join(args)}", file=sys.stderr, flush=True)
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        start = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        tree = PeakTree(process.pid)
        tree.start()
        # wait4: the rusage of the command and every descendant it waited for
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        tree.done.set()
        tree.join()
    if process.returncode:
        raise SystemExit(f"{step}: exit {process.returncode}; its output is in {log}")
    print(f"    {seconds:.1f} s", file=sys.stderr, flush=True)
    return {
        "step": step,
        "seconds": round(seconds, 2),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "tree_rss_mb": round(tree.peak / 2**20, 1),
    }


def quiet(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout


def walk_blocks(folder: Path, seen: set, skip: tuple[str, ...] = ()) -> tuple[int, int]:
    """(disk bytes of the inodes under ``folder`` not in ``seen``, apparent bytes of its
    files); adds the inodes to ``seen``. Top-level names in ``skip`` are left out."""
    blocks = apparent = 0
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if not (Path(entry.path).parent == folder and entry.name in skip):
                        stack.append(Path(entry.path))
                    continue
                info = entry.stat(follow_symlinks=False)
                apparent += info.st_size
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    blocks += info.st_blocks * 512
    return blocks, apparent


def disk(root: Path, base_mb: float = 0.0) -> dict:
    """MB on disk of a project: its workspace (no .git, no cache), then what the cache adds
    (a hard-linked image counts once), the images' own bytes, and the ratio of what the
    pipeline added (both, less ``base_mb``: the project's files before it ran) to them."""
    if not root.is_dir():
        return {}
    seen: set = set()
    workspace, _ = walk_blocks(root, seen, skip=(".git", ".dvc"))
    cache_dir = root / ".dvc" / "cache"
    cache, _ = walk_blocks(cache_dir, seen) if cache_dir.is_dir() else (0, 0)
    images = root / "data" / "images"
    _, image_bytes = walk_blocks(images, set()) if images.is_dir() else (0, 0)
    mb = 1 / 1e6
    return {
        "workspace_mb": round(workspace * mb, 1),
        "cache_adds_mb": round(cache * mb, 1),
        "images_mb": round(image_bytes * mb, 1),
        "ratio": round(((workspace + cache) * mb - base_mb) / (image_bytes * mb), 2)
        if image_bytes
        else None,
    }


def make_project(root: Path, competition: Path) -> None:
    """This repository's files (tracked and untracked, not ignored) and the bench params, as
    a fresh git repository with DVC."""
    names = quiet(["git", "ls-files", "-co", "--exclude-standard", "-z"], REPO).split("\0")
    for name in filter(None, names):
        source = REPO / name
        if source.is_file() and not name.startswith("bench/"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    shutil.copytree(competition, root / "data" / "scale")
    params = read_params_file(REPO / "params.yaml") | BENCH_PARAMS
    params["download"] |= {"max_side": 256, "per_host": params["download"]["concurrency"]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    quiet(["git", "init", "-q"], root)
    quiet(["git", "add", "-A"], root)
    quiet(["git", "commit", "-qm", "start"], root)


def queued(root: Path, log: Path) -> dict:
    """A queued experiment that re-runs folds: from `dvc queue start` to its end."""
    quiet(["dvc", "exp", "run", "--queue", "-n", "scale-q", "folds", "-S", "folds=4"], root)
    start = time.perf_counter()
    step = timed("queue start", ["dvc", "queue", "start", "-j", "1"], root, log)
    while re.search(r"\b(Queued|Running)\b", quiet(["dvc", "queue", "status"], root)):
        time.sleep(1)
    seconds = time.perf_counter() - start
    status = quiet(["dvc", "queue", "status"], root)
    if "Success" not in status:
        raise SystemExit(f"the queued experiment failed:\n{status}")
    with log.open("a") as out:
        out.write(quiet(["dvc", "queue", "logs", "scale-q"], root))
    return step | {"step": "queued exp (folds)", "seconds": round(seconds, 2)}


def bench_size(n: int, args: argparse.Namespace, work: Path) -> dict:
    sides = tuple(args.photo_sides)
    photos = make_photos(n, sides)
    served = serve_extras(sides)
    log = work / f"scale-{n}.log"
    root, clone, remote = work / f"project-{n}", work / f"clone-{n}", work / f"remote-{n}"
    for folder in (root, clone, remote):
        shutil.rmtree(folder, ignore_errors=True)
    log.unlink(missing_ok=True)
    root.mkdir(parents=True)
    server = Server(disk=served)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            splits = write_competition(
                Path(tmp), n, lambda name: server.url("d", args.delay_ms, name)
            )
            make_project(root, Path(tmp))
        base = disk(root)["workspace_mb"]  # the project's own files
        steps = []
        for stage in PIPELINE:
            steps.append(timed(f"repro {stage}", ["dvc", "repro", stage], root, log))
            steps[-1]["disk"] = disk(root, base)
        quiet(["git", "add", "-A"], root)
        quiet(["git", "commit", "-qm", "baseline"], root)
        steps.append(timed("status (unchanged)", ["dvc", "status"], root, log))
        steps.append(timed("repro (unchanged)", ["dvc", "repro"], root, log))
        steps.append(
            timed(
                "exp run --temp folds",
                ["dvc", "exp", "run", "--temp", "folds", "-S", "folds=3"],
                root,
                log,
            )
        )
        steps.append(queued(root, log))
        folds_s = next(s["seconds"] for s in steps if s["step"] == "repro folds")
        steps[-1]["overhead_s"] = round(steps[-1]["seconds"] - folds_s, 2)
        steps[-1]["disk"] = disk(root, base)
        quiet(["dvc", "remote", "add", "-d", "bench", str(remote)], root)
        quiet(["git", "commit", "-qam", "remote"], root)
        steps.append(timed("push", ["dvc", "push"], root, log))
        steps[-1]["disk"] = {"remote_mb": round(walk_blocks(remote, set())[0] / 1e6, 1)}
        quiet(["git", "clone", "-q", str(root), str(clone)], work)
        steps.append(timed("pull (fresh clone)", ["dvc", "pull"], clone, log))
        steps[-1]["disk"] = disk(clone, base)
    finally:
        server.close()
        if not args.keep:
            for folder in (root, clone, remote):
                shutil.rmtree(folder, ignore_errors=True)
    return {
        "n": n,
        "splits": splits,
        "photo_sides": sides,
        "photo_mb": round(sum(photo_path(i, sides).stat().st_size for i in range(n)) / 1e6, 1),
        "photos": photos,
        "delay_ms": args.delay_ms,
        "cores": os.cpu_count(),
        "load_at_start": os.getloadavg(),
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dvc": quiet(["dvc", "--version"], REPO).strip(),
        "steps": steps,
    }


def table(results: list[dict]) -> str:
    """Markdown: seconds and peak RSS (largest process / whole tree) per step and N, and the
    growth exponents of time and tree RSS between the smallest and the largest N."""
    results = sorted(results, key=lambda r: r["n"])
    first, last = results[0], results[-1]
    head = " | ".join(f"{r['n']:,} images: s, MB" for r in results)
    lines = [f"| step | {head} | exponent (s, MB) |", "| --- |" + " --- |" * (len(results) + 1)]
    for step in [s["step"] for s in last["steps"]]:
        cells, found = [], {}
        for r in results:
            s = next((s for s in r["steps"] if s["step"] == step), None)
            found[r["n"]] = s
            overhead = f" (+{s['overhead_s']:.0f} s over folds)" if s and "overhead_s" in s else ""
            cells.append(
                f"{s['seconds']:.1f}{overhead}, {s['max_rss_mb']:.0f} / {s['tree_rss_mb']:.0f}"
                if s
                else "-"
            )
        a, b = found[first["n"]], found[last["n"]]
        exponent = "-"
        if a and b and len(results) > 1:
            exponent = (
                f"{growth(a['seconds'], b['seconds'], first['n'], last['n']):.2f}, "
                f"{growth(a['tree_rss_mb'], b['tree_rss_mb'], first['n'], last['n']):.2f}"
            )
        lines.append(f"| `{step}` | {' | '.join(cells)} | {exponent} |")
    lines += [
        "",
        "| N | images MB | workspace MB | cache adds MB | added / images | remote MB | clone MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        by = {s["step"]: s.get("disk", {}) for s in r["steps"]}
        ws, clone = by.get("queued exp (folds)", {}), by.get("pull (fresh clone)", {})
        lines.append(
            f"| {r['n']:,} | {ws.get('images_mb')} | {ws.get('workspace_mb')} | "
            f"{ws.get('cache_adds_mb')} | {ws.get('ratio')} | "
            f"{by.get('push', {}).get('remote_mb')} | "
            f"{(clone.get('workspace_mb') or 0) + (clone.get('cache_adds_mb') or 0):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, help="one size N")
    parser.add_argument("--sizes", type=int, nargs="+", default=[], help="several sizes")
    parser.add_argument("--keep", type=Path, help="make the projects in DIR and keep them")
    parser.add_argument("--delay-ms", type=int, default=20, help="the server's latency")
    parser.add_argument(
        "--photo-sides",
        type=int,
        nargs=2,
        default=[400, 800],
        metavar=("MIN", "MAX"),
        help="longer side of the photos, px (a smoke run: 64 160)",
    )
    parser.add_argument("--table", action="store_true", help="print the stored results' table")
    parser.add_argument("--photos-only", type=int, help="make N photos and report the rate")
    args = parser.parse_args()
    if args.photos_only:
        print(json.dumps(make_photos(args.photos_only, tuple(args.photo_sides))))
        return
    sizes = sorted(set(args.sizes + ([args.images] if args.images else [])))
    if not sizes and not args.table:
        parser.error("give --images N, --sizes N..., --table or --photos-only N")
    RESULTS.mkdir(parents=True, exist_ok=True)
    sides = "{}-{}".format(*args.photo_sides)  # results of other photo sizes are not compared
    work = args.keep or WORK
    work.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        result = bench_size(n, args, work.resolve())
        (RESULTS / f"{n}-{sides}.json").write_text(json.dumps(result, indent=1))
    stored = [json.loads(path.read_text()) for path in RESULTS.glob(f"*-{sides}.json")]
    if stored:
        print(f"results: {RESULTS}; cells: seconds, peak RSS MB of the largest process / tree\n")
        print(table(stored))


if __name__ == "__main__":
    main()
