"""Command (not a DVC stage): sweep the learning rate on a fold's training images, save a plot
of loss against lr, and print a suggested `lr`.

    python -m stages.lr_find [--fold 0] [--steps 200] [--start 1e-6] [--end 1] \
        [--out models/lr_find.png]
"""

import argparse
import json
from pathlib import Path

import torch

from lib.common.figures import line_plot
from lib.common.params import load_params
from lib.prepare.folds import read_folds, split_fold
from lib.train.data import build_transforms, make_loader, rows_dataset
from lib.train.device import pick_device
from lib.train.lr_finder import lr_sweep, suggest_lr
from lib.train.model import create_model
from stages.common import FOLDS_CSV, IMAGES_DIR, STATS_JSON, run, upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--start", type=float, default=1e-6)
    parser.add_argument("--end", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("models/lr_find.png"))
    args = parser.parse_args()
    p = load_params(["arch", "pretrained", "head", "dropout", "img_size", "batch_size", "aug",
                     "optimizer", "momentum", "weight_decay", "workers", "seed"])
    torch.manual_seed(p["seed"])
    folds = read_folds(upstream(FOLDS_CSV, "folds"))
    classes = sorted(int(label) for label in set(folds["label"]))
    stats = json.loads(upstream(STATS_JSON, "stats").read_text())
    transform = build_transforms(img_size=p["img_size"], mean=stats["mean"], std=stats["std"],
                                 train=True, aug=p["aug"])
    dataset = rows_dataset(split_fold(folds, args.fold)[0], images_dir=IMAGES_DIR,
                           classes=classes, transform=transform)
    loader = make_loader(dataset, batch_size=p["batch_size"], shuffle=True,
                         workers=p["workers"], seed=p["seed"])
    model = create_model(p["arch"], num_classes=len(classes), pretrained=p["pretrained"],
                         head=p["head"], dropout=p["dropout"], img_size=p["img_size"])
    lrs, losses = lr_sweep(model, loader, device=pick_device(), start_lr=args.start,
                           end_lr=args.end, steps=args.steps, optimizer=p["optimizer"],
                           weight_decay=p["weight_decay"], momentum=p["momentum"])
    suggestion = suggest_lr(lrs, losses)
    line_plot(lrs, losses, args.out, title=f"LR range test: {p['arch']}, {p['optimizer']}",
              x_label="learning rate", y_label="smoothed loss", log_x=True, mark_x=suggestion)
    print(f"suggested lr: {suggestion:.2g} (plot: {args.out}); set it with "
          f"`dvc exp run -S lr={suggestion:.2g}`")


if __name__ == "__main__":
    run(main)
