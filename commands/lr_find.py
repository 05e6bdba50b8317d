"""Command (not a DVC stage): sweep the learning rate over one pass (at most) of a fold's
training images, save a plot of loss against lr with the suggestion and the current `lr`
marked, and print the suggestion (lib.train.lr_finder: bounds, divergence, the valley rule).

    python -m commands.lr_find [--fold 0] [--max-steps 100] [--start 1e-5] [--end 1] \
        [--out reports/lr_find.png]
"""

import argparse
import json
from pathlib import Path

import torch

from lib.common.figures import Mark, line_plot
from lib.prepare.folds import read_folds, split_fold
from lib.train.data import build_transforms, make_loader, rows_dataset
from lib.train.device import pick_device
from lib.train.loop import TrainConfig
from lib.train.lr_finder import lr_sweep, sweep_steps, valley
from lib.train.model import create_model
from stages.common import FOLDS_CSV, IMAGES_DIR, STATS_JSON, run, upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", type=int, default=0, help="sweep on this fold's training images")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=100,
        help="step cap; the sweep never takes more than one pass over the data",
    )
    parser.add_argument("--start", type=float, default=1e-5, help="first lr of the sweep")
    parser.add_argument("--end", type=float, default=1.0, help="last lr (if it gets there)")
    parser.add_argument(
        "--out", type=Path, default=Path("reports/lr_find.png"), help="the plot (PNG)"
    )
    args = parser.parse_args()
    config = TrainConfig.load()  # the model, data and optimizer as train@k builds them
    torch.manual_seed(config.seed)
    folds = read_folds(upstream(FOLDS_CSV, "folds"))
    classes = sorted(int(label) for label in set(folds["label"]))
    stats = json.loads(upstream(STATS_JSON, "stats").read_text())
    transform = build_transforms(
        img_size=config.img_size, mean=stats["mean"], std=stats["std"], train=True, aug=config.aug
    )
    dataset = rows_dataset(
        split_fold(folds, args.fold)[0], images_dir=IMAGES_DIR, classes=classes, transform=transform
    )
    loader = make_loader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        workers=config.workers,
        seed=config.seed,
    )
    # before building the model: too little data is said at once
    sweep_steps(len(loader), args.max_steps, images=len(dataset), batch_size=config.batch_size)
    model = create_model(
        config.arch,
        num_classes=len(classes),
        pretrained=config.pretrained,
        head=config.head,
        dropout=config.dropout,
        img_size=config.img_size,
    )
    sweep = lr_sweep(
        model,
        loader,
        device=pick_device(),
        start_lr=args.start,
        end_lr=args.end,
        max_steps=args.max_steps,
        config=config,
    )
    suggestion, start, end = valley(sweep.lrs, sweep.smoothed)
    line_plot(
        sweep.lrs,
        sweep.smoothed,
        args.out,
        title=f"LR range test: {config.arch}, {config.optimizer}, batch {config.batch_size}",
        x_label="learning rate (head)",
        y_label="smoothed training loss",
        log_x=True,
        marks=[
            Mark(suggestion, f"suggested {suggestion:.2g}"),
            Mark(config.lr, f"current lr {config.lr:.2g}", colour="#2ca02c"),
        ],
        shade=(sweep.lrs[start], sweep.lrs[end]),
    )
    stopped = (
        f"stopped at lr {sweep.lrs[-1]:.2g}, where the loss diverged"
        if sweep.diverged
        else f"reached lr {sweep.lrs[-1]:.2g}"
    )
    print(
        f"swept {len(sweep.lrs)} of {sweep.steps} steps (one pass over {len(dataset)} images "
        f"at most), {stopped}; the loss falls steadily from {sweep.lrs[start]:.2g} to "
        f"{sweep.lrs[end]:.2g} (shaded)"
    )
    print(
        f"suggested lr: {suggestion:.2g} (the valley's middle; current lr {config.lr:.2g}; plot: "
        f"{args.out}); try it with `dvc exp run -S lr={suggestion:.2g}`"
    )


if __name__ == "__main__":
    run(main)
