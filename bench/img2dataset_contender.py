"""(c) of the download benchmark: img2dataset, the pip package, in its own venv
(bench/.cache/venv-img2dataset, made on first use; never a dependency of the project), run on
a URL list in a child process as its users run it: output_format files, resize_mode
keep_ratio_largest, resize_only_if_bigger, no hashing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from loopback import CACHE

from lib.acquire.resize import ImageLimits

I2D_VENV = CACHE / "venv-img2dataset"
I2D_VERSION = "1.47.0"

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
        steps = [
            [sys.executable, "-m", "venv", str(I2D_VENV)],
            [str(python), "-m", "pip", "install", "--quiet", f"img2dataset=={I2D_VERSION}"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode:
                shutil.rmtree(I2D_VENV, ignore_errors=True)
                return f"`{' '.join(step[-3:])}` failed: {done.stderr.strip()[-300:]}"
    check = subprocess.run(
        [str(python), "-c", "import img2dataset"], capture_output=True, text=True
    )
    if check.returncode:
        return f"import img2dataset failed: {check.stderr.strip()[-300:]}"
    return None


def img2dataset(
    urls: list[str], out: Path, limits: ImageLimits, processes: int, threads: int
) -> tuple[int, float, float]:
    """(c): images written, seconds from its first shard's start to its last shard's end (its
    own count, as it logs images/s; the start of its processes not counted), and the whole
    img2dataset.download() call's seconds (its imports not counted)."""
    out.mkdir(parents=True, exist_ok=True)
    url_list = out / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    # shards of a quarter of a process's share, so every process stays busy to the end
    per_shard = max(1, len(urls) // (4 * processes))
    options = dict(
        url_list=str(url_list),
        output_folder=str(out / "images"),
        processes_count=processes,
        thread_count=threads,
        image_size=limits.max_side,
        resize_mode="keep_ratio_largest",
        resize_only_if_bigger=True,
        encode_quality=limits.quality,
        encode_format="jpg",
        output_format="files",
        input_format="txt",
        number_sample_per_shard=per_shard,
        timeout=30,
        retries=0,
        compute_hash=None,
        extract_exif=False,
        enable_wandb=False,
        distributor="multiprocessing",
        incremental_mode="incremental",
    )
    done = subprocess.run(
        [str(I2D_VENV / "bin" / "python"), "-c", _I2D_DRIVER, json.dumps(options)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"img2dataset failed: {done.stderr.strip()[-2000:]}")
    call_seconds = float(done.stdout.split("I2D_SECONDS")[-1])
    shards = [json.loads(path.read_text()) for path in (out / "images").glob("*_stats.json")]
    span = max(s["end_time"] for s in shards) - min(s["start_time"] for s in shards)
    written = sum(1 for _ in (out / "images").rglob("*.jpg"))
    return written, span, call_seconds
