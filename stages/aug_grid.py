"""Command (not a DVC stage): write a PNG grid of augmented training images for an `aug`
level, to look at what the model will see before training.

    python -m stages.aug_grid [--level medium] [--images 8] [--copies 4] [--out PATH]
"""

import argparse
from pathlib import Path

import numpy as np

from lib.common.figures import image_grid
from lib.common.images import load_rgb_array
from lib.common.params import load_params
from lib.prepare.folds import read_folds
from lib.train.data import AUG_LEVELS, build_transforms
from stages.common import FOLDS_CSV, IMAGES_DIR, run, upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", choices=AUG_LEVELS, help="default: the aug param")
    parser.add_argument("--images", type=int, default=8, help="training images (grid rows)")
    parser.add_argument("--copies", type=int, default=6, help="augmented copies of each")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    p = load_params(["img_size", "aug", "seed"])
    level = args.level or p["aug"]
    rows = read_folds(upstream(FOLDS_CSV, "folds")).sample(n=args.images, random_state=p["seed"])
    transform = build_transforms(img_size=p["img_size"], mean=[0] * 3, std=[1] * 3, train=True,
                                 aug=level, normalize=False)
    transform.set_random_seed(p["seed"])
    tiles, captions = [], []
    for _, row in rows.iterrows():
        original = load_rgb_array(IMAGES_DIR / row["path"])
        tiles.append(original)
        captions.append(f"label {row['label']} (original)")
        for copy in range(args.copies):
            tensor = transform(image=original)["image"]  # CHW uint8 when not normalised
            tiles.append(np.ascontiguousarray(tensor.permute(1, 2, 0).numpy().astype(np.uint8)))
            captions.append(f"{level} #{copy + 1}")
    out = args.out or Path(f"models/aug_{level}.png")
    image_grid(tiles, captions, out, cols=args.copies + 1)
    print(f"wrote {out}: {args.images} training images, {args.copies} '{level}' copies each")


if __name__ == "__main__":
    run(main)
