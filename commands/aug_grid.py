"""Command (not a DVC stage): write a PNG grid of augmented training images for an `aug`
level, to look at what the model will see before training. One row per training image, named
by its class (the classes file's names, else the label id): the original, then its copies.

    python -m commands.aug_grid [--level medium] [--images 8] [--copies 6] [--out PATH]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from commands.class_names import class_names
from lib.common.figures import image_grid
from lib.common.images import load_rgb_array
from lib.common.params import load_params
from lib.prepare.folds import read_folds
from lib.train.data import AUG_LEVELS, build_transforms
from lib.train.loop import TrainConfig
from stages.common import FOLDS_CSV, IMAGES_DIR, REPORTS_DIR, run, upstream


def one_per_class(folds: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """`count` labelled images, as many classes as possible (one image each, in label order),
    then more images at random when there are fewer classes than `count`."""
    firsts = folds.groupby("label", sort=True).sample(n=1, random_state=seed)
    rows = firsts.head(count)
    if len(rows) < count:
        rest = folds.drop(rows.index)
        rows = pd.concat(
            [rows, rest.sample(n=min(count - len(rows), len(rest)), random_state=seed)]
        )
    return rows.sort_values("label", kind="stable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", choices=AUG_LEVELS, help="default: the aug param")
    parser.add_argument("--images", type=int, default=8, help="training images (grid rows)")
    parser.add_argument("--copies", type=int, default=6, help="augmented copies of each")
    parser.add_argument("--out", type=Path, help="default: reports/aug_<level>.png")
    args = parser.parse_args()
    config = TrainConfig.load()  # the images as train@k augments them
    p = load_params(["competition", "classes_file"])
    level = args.level or config.aug
    folds = read_folds(upstream(FOLDS_CSV, "folds"))
    rows = one_per_class(folds[folds["label"].notna()], args.images, config.seed)
    names = class_names(p["competition"], p["classes_file"])
    transform = build_transforms(
        img_size=config.img_size, mean=[0] * 3, std=[1] * 3, train=True, aug=level, normalize=False
    )
    transform.set_random_seed(config.seed)
    tiles, captions, labels = [], [], []
    for _, row in rows.iterrows():
        original = load_rgb_array(IMAGES_DIR / row["path"])
        label = int(row["label"])
        labels.append(f"{names[label]} ({label})" if label in names else f"label {label}")
        tiles.append(original)
        captions.append(f"original {original.shape[1]}x{original.shape[0]}")
        for copy in range(args.copies):
            tensor = transform(image=original)["image"]  # CHW uint8 when not normalised
            tiles.append(np.ascontiguousarray(tensor.permute(1, 2, 0).numpy().astype(np.uint8)))
            captions.append(f"{level} #{copy + 1}")
    out = args.out or REPORTS_DIR / f"aug_{level}.png"
    image_grid(tiles, captions, out, cols=args.copies + 1, row_labels=labels)
    print(
        f"wrote {out}: {len(rows)} training images ({rows['label'].nunique()} classes), "
        f"{args.copies} '{level}' copies each"
    )


if __name__ == "__main__":
    run(main)
