"""Build the embedded demo competition from Fashion-MNIST.

In: the original Fashion-MNIST IDX files (Debian package `dataset-fashion-mnist`, MIT licence,
Zalando Research), by default from /usr/share/datasets/fashion-mnist.
Out (beside this script): `images/<split>/<id>.png`, `train.json`, `validation.json` and
`test.json` in the iMaterialist Furniture 2018 format, `classes.csv` (label_id,name) and
`test_labels.csv` (id,label) so the demo can score itself.

`--large DIR` builds a larger competition into DIR instead, for measuring recipes: 10,000
labelled images (9,000 train, 1,000 validation) and 2,000 test images with answers, all from
Fashion-MNIST's training split and disjoint from the demo's images.

Like the real lists, a few entries have a dead first URL (a missing file, an HTML error page or
a 1x1 placeholder) and a good second one, a few have no good URL at all, and a few images are
byte-identical copies of others (inside train, and between train and test).

    python data/demo/make_demo.py [--source DIR] [--seed 0] [--large DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
PER_CLASS = {"train": 300, "validation": 50, "test": 100}
LARGE_PER_CLASS = {"train": 900, "validation": 100, "test": 200}
# Image ids (within a split, like the real competition) whose mirrors are broken.
DEAD_FIRST = 6  # per split: first URL dead, second good
NO_GOOD = 2  # per split: every URL dead
DUPLICATES_IN_TRAIN = 3  # pairs of byte-identical train images
DUPLICATES_IN_TEST = 2  # test images identical to a train image
BROKEN_URLS = (
    "file:images/broken/error.html",
    "file:images/broken/placeholder.gif",
    "file:images/gone/{split}-{image_id}.png",
)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped) as a uint8 array: images (n, 28, 28) or labels (n,)."""
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def balanced_sample(
    labels: np.ndarray, per_class: int, rng: np.random.Generator, exclude: np.ndarray | None = None
) -> np.ndarray:
    """`per_class` positions of each label, none of them in `exclude`, shuffled."""
    allowed = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        allowed[exclude] = False
    picks = [
        rng.choice(np.flatnonzero((labels == c) & allowed), per_class, replace=False)
        for c in range(10)
    ]
    order = np.concatenate(picks)
    rng.shuffle(order)
    return order


def url_lists(split: str, n: int, rng: np.random.Generator) -> list[list[str]]:
    """One URL list per image id 1..n; a few with a dead first mirror, a few with none good."""
    ids = rng.choice(np.arange(1, n + 1), DEAD_FIRST + NO_GOOD, replace=False)
    dead_first, no_good = set(ids[:DEAD_FIRST].tolist()), set(ids[DEAD_FIRST:].tolist())
    lists = []
    for image_id in range(1, n + 1):
        good = f"file:images/{split}/{image_id}.png"
        broken = BROKEN_URLS[image_id % len(BROKEN_URLS)].format(split=split, image_id=image_id)
        if image_id in dead_first:
            lists.append([broken, good])
        elif image_id in no_good:
            lists.append([broken, f"file:images/gone/{split}-{image_id}-mirror.png"])
        else:
            lists.append([good])
    return lists


def write_split(
    out: Path, split: str, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> None:
    folder = out / "images" / split
    folder.mkdir(parents=True)
    entries, annotations = [], []
    urls_per_image = url_lists(split, len(images), rng)
    for image_id, (pixels, urls) in enumerate(zip(images, urls_per_image, strict=True), 1):
        if urls[-1].endswith(f"/{image_id}.png"):
            Image.fromarray(pixels, mode="L").save(folder / f"{image_id}.png", optimize=True)
        entries.append({"url": urls, "image_id": image_id})
        annotations.append({"image_id": image_id, "label_id": int(labels[image_id - 1]) + 1})
    doc = {"images": entries}
    if split != "test":
        doc["annotations"] = annotations
    (out / f"{split}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    if split == "test":
        with open(out / "test_labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "label"])
            writer.writerows((a["image_id"], a["label_id"]) for a in annotations)


def plant_duplicates(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Like real scraped data, a few byte-identical images: 3 pairs inside train (same label)
    and 2 test images that are copies of train images (their answers follow)."""
    for label in rng.choice(10, DUPLICATES_IN_TRAIN, replace=False):
        source, copy = rng.choice(np.flatnonzero(train_labels == label), 2, replace=False)
        train_images[copy] = train_images[source]
    for test_pos, train_pos in zip(
        rng.choice(len(test_images), DUPLICATES_IN_TEST, replace=False),
        rng.choice(len(train_images), DUPLICATES_IN_TEST, replace=False),
        strict=True,
    ):
        test_images[test_pos], test_labels[test_pos] = (
            train_images[train_pos],
            train_labels[train_pos],
        )


def write_broken_files(out: Path) -> None:
    """The kinds of junk real mirrors serve: an HTML error page and a 1x1 placeholder."""
    broken = out / "images" / "broken"
    broken.mkdir(parents=True)
    (broken / "error.html").write_text("<html><body><h1>404 Not Found</h1></body></html>\n")
    Image.new("P", (1, 1)).save(broken / "placeholder.gif")


def split_by_label(
    order: np.ndarray, labels: np.ndarray, per_class: dict[str, int]
) -> dict[str, list[int]]:
    """Deal `order`'s positions into the splits, in `per_class`'s order: the first
    per_class[split] of each label to the first split, and so on."""
    # each label's n-th position goes to the split whose share of that label holds n
    dealt = [split for split, count in per_class.items() for _ in range(count)]
    seen: dict[int, int] = {}
    splits: dict[str, list[int]] = {split: [] for split in per_class}
    for i in order:
        label = int(labels[i])
        splits[dealt[seen.get(label, 0)]].append(i)
        seen[label] = seen.get(label, 0) + 1
    return splits


def build(source: Path, out: Path, seed: int, large: bool = False) -> None:
    rng = np.random.default_rng(seed)
    pool_images = read_idx(source / "train-images-idx3-ubyte.gz")
    pool_labels = read_idx(source / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(source / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(source / "t10k-labels-idx1-ubyte.gz")

    shutil.rmtree(out / "images", ignore_errors=True)
    write_broken_files(out)
    # The demo: train and validation from Fashion-MNIST's train set without overlap, test from
    # t10k. The large competition: every split from the train set, none of the demo's images.
    demo_pool = balanced_sample(pool_labels, PER_CLASS["train"] + PER_CLASS["validation"], rng)
    if large:
        order = balanced_sample(pool_labels, sum(LARGE_PER_CLASS.values()), rng, exclude=demo_pool)
        picked = split_by_label(order, pool_labels, LARGE_PER_CLASS)
    else:
        picked = split_by_label(
            demo_pool,
            pool_labels,
            {"train": PER_CLASS["train"], "validation": PER_CLASS["validation"]},
        )
    splits = {
        split: (pool_images[idx].copy(), pool_labels[idx].copy()) for split, idx in picked.items()
    }
    if not large:
        test_order = balanced_sample(test_labels, PER_CLASS["test"], rng)
        splits["test"] = (test_images[test_order].copy(), test_labels[test_order].copy())
    plant_duplicates(*splits["train"], *splits["test"], rng)
    for split, (images, labels) in splits.items():
        write_split(out, split, images, labels, rng)

    with open(out / "classes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label_id", "name"])
        writer.writerows((i + 1, name) for i, name in enumerate(CLASS_NAMES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--large",
        type=Path,
        metavar="DIR",
        help="build the 10,000-image competition into DIR instead of the demo",
    )
    args = parser.parse_args()
    if not (args.source / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(
            f"make_demo: no Fashion-MNIST IDX files in {args.source}: install Debian's "
            "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --source"
        )
    if args.large:
        args.large.mkdir(parents=True, exist_ok=True)
    build(
        args.source,
        args.large or Path(__file__).resolve().parent,
        args.seed,
        large=args.large is not None,
    )


if __name__ == "__main__":
    main()
