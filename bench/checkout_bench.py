"""How DVC puts an image tree back from its cache, by link type: what a queued or `--temp`
experiment pays to get data/images into its temporary workspace.

Builds a DVC project whose stage writes N small image files (default 20,000, about the demo's
size each), then times `dvc checkout` of that tree into an empty workspace with each
`cache.type`, and the bytes it adds to the disk. Copy is DVC's fallback on file systems without
reflinks (ext4); the project's .dvc/config asks for reflink, then hardlink, then copy.

    .venv/bin/python bench/checkout_bench.py [--files 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TYPES = ("copy", "hardlink", "symlink")


def dvc(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    subprocess.run(["dvc", *args], cwd=cwd, env=env, check=True, capture_output=True)


def make_project(root: Path, files: int) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc("init", "-q", cwd=root)
    maker = root / "make_images.py"
    maker.write_text(
        "import os, sys\n"
        "for i in range(int(sys.argv[1])):\n"
        "    d = f'data/images/train/{i % 10:02d}'\n"
        "    os.makedirs(d, exist_ok=True)\n"
        "    open(f'{d}/{i}.png', 'wb').write(os.urandom(700) + i.to_bytes(4, 'little'))\n"
    )
    (root / "dvc.yaml").write_text(
        f"stages:\n  download:\n    cmd: python make_images.py {files}\n"
        "    deps: [make_images.py]\n    outs: [data/images]\n"
    )
    dvc("repro", "-q", cwd=root)


def inodes(path: Path) -> set[tuple[int, int]]:
    found = set()
    for folder, _, names in os.walk(path):
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            found.add((info.st_dev, info.st_ino))
    return found


def disk_added(path: Path, cache: set[tuple[int, int]]) -> int:
    """Bytes of the blocks under `path` that the cache does not already hold."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            if (info.st_dev, info.st_ino) not in cache:
                total += info.st_blocks * 512
    return total


def time_checkout(root: Path, link: str, cache: set[tuple[int, int]]) -> tuple[float, int]:
    dvc("config", "cache.type", link, cwd=root)
    shutil.rmtree(root / "data" / "images")
    start = time.perf_counter()
    dvc("checkout", "-q", "--relink", cwd=root)
    seconds = time.perf_counter() - start
    return seconds, disk_added(root / "data" / "images", cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="checkout-bench-") as tmp:
        root = Path(tmp)
        make_project(root, args.files)
        cache = inodes(root / ".dvc" / "cache")
        results: dict[str, list[tuple[float, int]]] = {link: [] for link in TYPES}
        for _ in range(args.repeats):  # interleaved, so machine noise hits every type alike
            for link in TYPES:
                results[link].append(time_checkout(root, link, cache))
    base = sorted(s for s, _ in results["copy"])[args.repeats // 2]
    print(
        f"dvc checkout of {args.files} image files into an empty workspace "
        f"(median of {args.repeats})"
    )
    print(f"{'cache.type':<10} {'seconds':>8} {'vs copy':>8} {'disk added':>12}")
    for link in TYPES:
        seconds = sorted(s for s, _ in results[link])[args.repeats // 2]
        added = results[link][-1][1]
        print(f"{link:<10} {seconds:>8.2f} {base / seconds:>7.2f}x {added / 1e6:>9.1f} MB")


if __name__ == "__main__":
    main()
