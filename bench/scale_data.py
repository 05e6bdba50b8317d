"""The scale benchmark's data: N unique photo-like JPEGs and an iMaterialist-shaped competition
listing them (bench/scale_bench.py).

- ``make_photos(n, sides)``: JPEG ``i`` (longer side in ``sides``, 400-800 px by default, and
  quality 95-87 by size: 50-200 KB, about 100 KB on average) is a random window of one of a
  few real photographs (OpenCV's sample photos when the opencv-doc package is installed, else
  scikit-learn's two), rescaled into the target size in one resampling pass, colour-jittered
  through a lookup table, with a window of a fixed grain tile added, maybe mirrored, and 32
  pixels written from ``i``'s bits, so no two files are identical. Each image
  depends on ``i`` alone, so the cache (``bench/.cache/scale_photos/<sides>/``) made for a
  large N serves every smaller one. Made by a process pool, one process per core.
- ``write_competition(folder, n, url_of)``: train/validation/test.json in the iMaterialist
  shape (``{"images": [{"url": [...], "image_id": i}], "annotations": [{"image_id": i,
  "label_id": k}]}``), split like 194,828 / 6,400 / 12,800 (91 / 3 / 6 %), 128 classes: the
  validation and test splits balanced, train with a long tail (the largest class about 20x the
  smallest). About 1.5% of URLs fail as real lists do (404, a 1x1 GIF placeholder, an HTML
  error page) and 2% list a dead mirror before a good one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib.common.pools import process_pool  # noqa: E402

BENCH = Path(__file__).resolve().parent
PHOTO_CACHE = BENCH / ".cache" / "scale_photos"
OPENCV_PHOTOS = Path("/usr/share/doc/opencv-doc/examples/data")
# the colour photographs among OpenCV's samples (the rest are logos, charts, grey boards)
PHOTO_NAMES = [
    f"{name}.jpg"
    for name in [
        "aero1",
        "aero3",
        "aloeL",
        "apple",
        "baboon",
        "board",
        "building",
        "butterfly",
        "ela_original",
        "fruits",
        "home",
        "leuvenA",
        "licenseplate_motion",
        "messi5",
        "orange",
        "squirrel_cls",
        "starry_night",
        "stuff",
    ]
]
GRAIN, GRAIN_SIDE = 5.0, 1024  # noise sigma (grey levels); the noise tile is twice this side
CLASSES = 128
SPLIT_SHARES = {"validation": 6_400 / 214_028, "test": 12_800 / 214_028}  # train: the rest
TAIL = 3.0  # train class k gets a share ~ exp(-TAIL * k / 127): largest / smallest = e^3 ~ 20
PER_FOLDER = 1000  # photos per cache sub-folder
# the failures a real list has, as shares of every image (train, validation and test alike)
DEAD, PLACEHOLDER, HTML, MIRROR = 0.007, 0.005, 0.003, 0.02
PLACEHOLDER_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
ERROR_PAGE = b"<html><body><h1>503 Service Unavailable</h1></body></html>"


@cache
def _grain() -> Image.Image:
    """Gaussian noise around 128 (sigma GRAIN), larger than any photo: its windows are grain."""
    rng = np.random.default_rng(0)
    noise = rng.normal(128, GRAIN, (GRAIN_SIDE * 2, GRAIN_SIDE * 2))
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), mode="L")


@cache
def _sources() -> list[Image.Image]:
    found = [OPENCV_PHOTOS / name for name in PHOTO_NAMES if (OPENCV_PHOTOS / name).is_file()]
    if len(found) >= 4:
        return [Image.open(path).convert("RGB") for path in found]
    from loopback import _sources as sklearn_photos  # china.jpg, flower.jpg

    return sklearn_photos()


def photo(i: int, sides: tuple[int, int]) -> Image.Image:
    """Photo ``i``: a window of a source photo, rescaled, colour-jittered, marked with ``i``."""
    rng = np.random.default_rng(i)
    sources = _sources()
    source = sources[int(rng.integers(len(sources)))]
    longer = int(rng.integers(sides[0], sides[1] + 1))
    shorter = max(8, int(longer * rng.uniform(0.6, 1.0)))
    width, height = (longer, shorter) if rng.random() < 0.6 else (shorter, longer)
    # the window: the target's aspect, 45-100% of what fits in the source
    fit = min(source.width / width, source.height / height)
    scale = fit * rng.uniform(0.45, 1.0)
    box_w, box_h = width * scale, height * scale
    left = rng.uniform(0, source.width - box_w)
    top = rng.uniform(0, source.height - box_h)
    image = source.resize(
        (width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
    )
    gains = rng.uniform(0.8, 1.2, 3)
    offsets = rng.uniform(-20, 20, 3)
    ramp = np.arange(256)
    lut = np.concatenate(
        [np.clip(ramp * g + o, 0, 255) for g, o in zip(gains, offsets, strict=True)]
    )
    image = image.point(lut.astype(np.uint8).tolist())
    # sensor grain: without it, a window of a smooth photo scaled up compresses below 50 KB
    x, y = (int(v) for v in rng.integers(0, GRAIN_SIDE, 2))
    grain = _grain().crop((x, y, x + width, y + height)).convert("RGB")
    image = ImageChops.add(image, grain, 1.0, -128)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for bit in range(32):  # i's bits as pixels of the first row: no two photos are identical
        image.putpixel((bit, 0), (255, 255, 255) if (i >> bit) & 1 else (0, 0, 0))
    return image


def photo_path(i: int, sides: tuple[int, int]) -> Path:
    return PHOTO_CACHE / f"{sides[0]}-{sides[1]}" / f"{i // PER_FOLDER:04d}" / f"{i}.jpg"


def _make_range(job: tuple[int, int, tuple[int, int]]) -> int:
    """Photos ``start .. stop - 1`` not yet in the cache; returns how many it made."""
    start, stop, sides = job
    made = 0
    for i in range(start, stop):
        path = photo_path(i, sides)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        image = photo(i, sides)
        # 95 at 400 px down to 87 at 800: every photo 50-200 KB (about 100 KB on average)
        quality = round(95 - 8 * (max(image.size) - 400) / 400)
        tmp = path.with_name(f".tmp-{path.name}")
        image.save(tmp, format="JPEG", quality=min(95, max(80, quality)))
        os.replace(tmp, path)  # a killed run leaves no partial photo under a photo's name
        made += 1
    return made


def make_photos(n: int, sides: tuple[int, int] = (400, 800), workers: int = 0) -> dict:
    """Photos 0 .. n-1 in the cache; returns what making them took (made, seconds, rate)."""
    chunk = 200
    jobs = [(start, min(start + chunk, n), sides) for start in range(0, n, chunk)]
    started, made, done = time.perf_counter(), 0, 0
    with process_pool(workers) as pool:
        for count in pool.imap_unordered(_make_range, jobs):
            made += count
            done += 1
            elapsed = time.perf_counter() - started
            if made and (done % 25 == 0 or done == len(jobs)):
                rate = made / elapsed
                left = (len(jobs) - done) * chunk * (made / max(done * chunk, 1)) / rate
                print(
                    f"photos: {done * chunk:,}/{n:,} checked, {made:,} made, "
                    f"{rate:.0f}/s, ETA {left:.0f} s",
                    file=sys.stderr,
                )
    seconds = time.perf_counter() - started
    return {"made": made, "seconds": round(seconds, 2), "per_s": round(made / seconds, 1)}


def split_sizes(n: int) -> dict[str, int]:
    validation = round(n * SPLIT_SHARES["validation"])
    test = round(n * SPLIT_SHARES["test"])
    return {"train": n - validation - test, "validation": validation, "test": test}


def train_counts(n_train: int) -> np.ndarray:
    """Images per train class: a long tail, every class at least 2."""
    weights = np.exp(-TAIL * np.arange(CLASSES) / (CLASSES - 1))
    counts = np.maximum(2, np.floor(weights / weights.sum() * n_train)).astype(int)
    counts[0] += n_train - counts.sum()  # the rounding's rest to the largest class
    return counts


def failure_kind(i: int) -> str | None:
    """Deterministic per image: dead, placeholder, html, mirror (a dead URL first) or None."""
    u = (i * 2654435761 % 2**32) / 2**32  # Knuth's multiplicative hash: spread, reproducible
    for kind, share in (("dead", DEAD), ("placeholder", PLACEHOLDER), ("html", HTML)):
        if u < share:
            return kind
        u -= share
    return "mirror" if u < MIRROR else None


def write_competition(folder: Path, n: int, url_of) -> dict[str, int]:
    """train/validation/test.json for photos 0 .. n-1 (``url_of(name)``: the URL serving the
    file ``name`` of the photo folder); returns the split sizes and the failures listed."""
    sizes = split_sizes(n)
    rng = np.random.default_rng(n)
    labels = {
        "train": np.repeat(np.arange(1, CLASSES + 1), train_counts(sizes["train"])),
        "validation": np.arange(sizes["validation"]) % CLASSES + 1,
        "test": np.arange(sizes["test"]) % CLASSES + 1,
    }
    order = rng.permutation(n)  # which photo each image id gets: classes are not photo ranges
    folder.mkdir(parents=True, exist_ok=True)
    failures = dict.fromkeys(("dead", "placeholder", "html", "mirror"), 0)
    image_id = 0
    for split in ("train", "validation", "test"):
        split_labels = rng.permutation(labels[split])
        images, annotations = [], []
        for label in split_labels:
            image_id += 1
            index = int(order[image_id - 1])
            good = url_of(f"{index // PER_FOLDER:04d}/{index}.jpg")
            kind = failure_kind(index)
            if kind:
                failures[kind] += 1
            urls = {
                "dead": [url_of(f"missing/{index}.jpg")],
                "placeholder": [url_of("placeholder.gif")],
                "html": [url_of("error.html")],
                "mirror": [url_of(f"missing/{index}.jpg"), good],
            }.get(kind or "", [good])
            images.append({"url": urls, "image_id": image_id})
            annotations.append({"image_id": image_id, "label_id": int(label)})
        doc: dict = {"images": images}
        if split != "test":
            doc["annotations"] = annotations
        (folder / f"{split}.json").write_text(json.dumps(doc))
    return sizes | {f"urls_{kind}": count for kind, count in failures.items()}


def serve_extras(sides: tuple[int, int]) -> Path:
    """The photo folder with the failing answers beside the photos; returns the folder."""
    root = PHOTO_CACHE / f"{sides[0]}-{sides[1]}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "placeholder.gif").write_bytes(PLACEHOLDER_GIF)
    (root / "error.html").write_bytes(ERROR_PAGE)
    return root


def photo_bytes(n: int, sides: tuple[int, int]) -> int:
    return sum(photo_path(i, sides).stat().st_size for i in range(n))


def growth(t1: float, t2: float, n1: int, n2: int) -> float:
    """The exponent e of t ~ N^e between two sizes."""
    if t1 <= 0 or t2 <= 0 or n1 == n2:
        return math.nan
    return math.log(t2 / t1) / math.log(n2 / n1)
