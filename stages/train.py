"""train@<fold>: fine-tune one model on every fold but <fold>, validating on <fold>.

Out: models/fold<k>/model.pt (weights + provenance) and models/fold<k>/live (DVCLive metrics).
While it runs, models/fold<k>/resume.pt holds the state after the last finished epoch: a killed
run started again (`dvc repro`) resumes from it, if params and data are unchanged.
With gpus > 1 it runs as one of the processes torchrun starts (`python -m stages.launch`):
each takes batch_size / gpus images of every batch; only rank 0 writes the outs and logs.
"""

import contextlib
import hashlib
import json
import logging

import torch
from dvclive import Live

from lib.common.errors import UserError
from lib.common.fileio import remove_stale_temps
from lib.common.params import load_params
from lib.prepare.folds import read_folds, split_fold
from lib.train import distributed
from lib.train.checkpoint import save_checkpoint
from lib.train.data import (
    build_transforms,
    decode_size,
    inverse_frequency,
    make_loader,
    rows_dataset,
)
from lib.train.loop import TrainConfig, as_metrics, fit
from lib.train.model import create_model
from stages.common import (
    FOLDS_CSV,
    IMAGES_DIR,
    STATS_JSON,
    fold_argument,
    model_dir,
    run,
    upstream,
)

CONFIG_KEYS = ["epochs", "lr", "optimizer", "momentum", "weight_decay", "schedule",
               "warmup_epochs", "sgdr_t0", "sgdr_t_mult", "plateau_patience", "plateau_factor",
               "freeze_epochs", "backbone_lr_mult", "layer_decay", "label_smoothing", "mixup",
               "cutmix", "mix_alpha", "ema", "keep", "seed", "amp", "compile", "sync_bn"]
# Knobs that change only speed (loader processes; torch.compile computes the same function):
# read, but not DVC deps, so changing them retrains nothing.
SPEED_PARAMS = ["workers", "compile"]
PARAMS = [key for key in [*CONFIG_KEYS, "arch", "pretrained", "head", "dropout", "img_size",
                          "batch_size", "aug", "class_balance", "gpus"]
          if key not in SPEED_PARAMS]


def main() -> None:
    fold = fold_argument()
    p = load_params(PARAMS + SPEED_PARAMS)
    env, device = distributed.setup(p["gpus"])
    try:
        train(fold, p, env, device)
    finally:
        distributed.teardown(env)


def train(fold: int, p: dict, env: distributed.Dist, device: torch.device) -> None:
    if p["batch_size"] % env.world:
        raise UserError(f"batch_size = {p['batch_size']} is not allowed with gpus = "
                        f"{env.world}: expected a multiple of gpus (each takes an equal share)")
    if not env.main:
        logging.getLogger().setLevel(logging.WARNING)
    if env.main:  # the only process that writes
        remove_stale_temps(model_dir(fold))
    torch.manual_seed(p["seed"])
    folds = read_folds(upstream(FOLDS_CSV, "folds"))
    stats_text = upstream(STATS_JSON, "stats").read_text()
    train_rows, val_rows = split_fold(folds, fold)
    classes = sorted(int(label) for label in set(folds["label"]))
    stats = json.loads(stats_text)
    loaders = {}
    for name, rows, is_train in (("train", train_rows, True), ("val", val_rows, False)):
        transform = build_transforms(img_size=p["img_size"], mean=stats["mean"], std=stats["std"],
                                     train=is_train, aug=p["aug"])
        size = decode_size(p["img_size"], train=is_train, aug=p["aug"])
        dataset = rows_dataset(rows, images_dir=IMAGES_DIR, classes=classes, transform=transform,
                               decode_size=size)
        class_weights = inverse_frequency(dataset.targets, len(classes))
        balance = is_train and p["class_balance"] == "sampler"
        loaders[name] = make_loader(
            dataset, batch_size=p["batch_size"] // env.world, shuffle=is_train,
            workers=p["workers"], seed=p["seed"], rank=env.rank, world=env.world,
            sample_weights=class_weights[dataset.targets] if balance else None)
    loss_weights = None
    if p["class_balance"] == "loss_weights":
        weights = inverse_frequency(loaders["train"].dataset.targets, len(classes))
        loss_weights = torch.tensor(weights, dtype=torch.float32)

    model = create_model(p["arch"], num_classes=len(classes), pretrained=p["pretrained"],
                         head=p["head"], dropout=p["dropout"])
    # The resume file only counts for the same params, folds and stats (speed knobs aside).
    provenance = {key: p[key] for key in PARAMS}
    key = hashlib.sha256((json.dumps(provenance, sort_keys=True) + FOLDS_CSV.read_text()
                          + stats_text).encode()).hexdigest()
    resume = model_dir(fold) / "resume.pt"
    live_dir = str(model_dir(fold) / "live")
    with (Live(dir=live_dir, dvcyaml=None, save_dvc_exp=False) if env.main
          else contextlib.nullcontext()) as live:
        def log_epoch(result):
            if live is None:  # only rank 0 logs
                return
            for name, value in as_metrics(result).items():
                live.log_metric(name, value)
            live.next_step()

        result = fit(model, train_loader=loaders["train"], val_loader=loaders["val"],
                     config=TrainConfig(**{k: p[k] for k in CONFIG_KEYS}), device=device,
                     fold=fold, num_classes=len(classes), class_weights=loss_weights,
                     resume_path=resume, resume_key=key, on_epoch=log_epoch, env=env)
    if not env.main:
        return
    save_checkpoint(model_dir(fold) / "model.pt", model=model, arch=p["arch"], head=p["head"],
                    classes=classes, mean=stats["mean"], std=stats["std"], img_size=p["img_size"],
                    params=provenance | {"kept_epoch": result.kept_epoch},
                    state_dict=result.state_dict)
    resume.unlink(missing_ok=True)


if __name__ == "__main__":
    run(main)
