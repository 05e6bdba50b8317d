"""train@<fold>: fine-tune one model on every fold but <fold>, validating on <fold>.

Out: models/fold<k>/model.pt (weights + provenance) and models/fold<k>/live (DVCLive metrics).
While it runs, models/fold<k>/resume.pt holds the state after the last finished epoch: a killed
run started again (`dvc repro`) resumes from it, if params and data are unchanged.
"""

import hashlib
import json

import torch
from dvclive import Live

from lib.checkpoint import save_checkpoint
from lib.data import build_transforms, inverse_frequency, make_loader, rows_dataset
from lib.device import pick_device
from lib.folds import read_folds, split_fold
from lib.model import create_model
from lib.params import load_params
from lib.train import TrainConfig, as_metrics, fit
from stages.common import FOLDS_CSV, IMAGES_DIR, STATS_JSON, fold_argument, model_dir, run

CONFIG_KEYS = ["epochs", "lr", "optimizer", "momentum", "weight_decay", "schedule",
               "warmup_epochs", "sgdr_t0", "sgdr_t_mult", "plateau_patience", "plateau_factor",
               "freeze_epochs", "backbone_lr_mult", "layer_decay", "label_smoothing", "mixup",
               "cutmix", "mix_alpha", "ema", "keep", "seed"]
KEYS = [*CONFIG_KEYS, "arch", "pretrained", "head", "dropout", "img_size", "batch_size", "aug",
        "class_balance", "workers"]


def main() -> None:
    fold = fold_argument()
    p = load_params(KEYS)
    torch.manual_seed(p["seed"])
    folds = read_folds(FOLDS_CSV)
    train_rows, val_rows = split_fold(folds, fold)
    classes = sorted(int(label) for label in set(folds["label"]))
    stats_text = STATS_JSON.read_text()
    stats = json.loads(stats_text)
    loaders = {}
    for name, rows, train in (("train", train_rows, True), ("val", val_rows, False)):
        transform = build_transforms(img_size=p["img_size"], mean=stats["mean"], std=stats["std"],
                                     train=train, aug=p["aug"])
        dataset = rows_dataset(rows, images_dir=IMAGES_DIR, classes=classes, transform=transform)
        class_weights = inverse_frequency(dataset.targets, len(classes))
        balance = train and p["class_balance"] == "sampler"
        loaders[name] = make_loader(
            dataset, batch_size=p["batch_size"], shuffle=train, workers=p["workers"],
            seed=p["seed"], sample_weights=class_weights[dataset.targets] if balance else None)
    loss_weights = None
    if p["class_balance"] == "loss_weights":
        weights = inverse_frequency(loaders["train"].dataset.targets, len(classes))
        loss_weights = torch.tensor(weights, dtype=torch.float32)

    model = create_model(p["arch"], num_classes=len(classes), pretrained=p["pretrained"],
                         head=p["head"], dropout=p["dropout"])
    # The resume file only counts for the same params, folds and stats.
    key = hashlib.sha256((json.dumps(p, sort_keys=True) + FOLDS_CSV.read_text() + stats_text)
                         .encode()).hexdigest()
    resume = model_dir(fold) / "resume.pt"
    with Live(dir=str(model_dir(fold) / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        def log_epoch(result):
            for name, value in as_metrics(result).items():
                live.log_metric(name, value)
            live.next_step()

        result = fit(model, train_loader=loaders["train"], val_loader=loaders["val"],
                     config=TrainConfig(**{k: p[k] for k in CONFIG_KEYS}), device=pick_device(),
                     fold=fold, num_classes=len(classes), class_weights=loss_weights,
                     resume_path=resume, resume_key=key, on_epoch=log_epoch)
    save_checkpoint(model_dir(fold) / "model.pt", model=model, arch=p["arch"], head=p["head"],
                    classes=classes, mean=stats["mean"], std=stats["std"], img_size=p["img_size"],
                    params=p | {"kept_epoch": result.kept_epoch}, state_dict=result.state_dict)
    resume.unlink(missing_ok=True)


if __name__ == "__main__":
    run(main)
