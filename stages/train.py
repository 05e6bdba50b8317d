"""train@<fold>: fine-tune one model on every fold but <fold>, validating on <fold>.

Out: models/fold<k>/model.pt (weights + provenance) and models/fold<k>/live (DVCLive metrics).
"""

import json

import torch
from dvclive import Live

from lib.checkpoint import save_checkpoint
from lib.data import build_transforms, make_loader, rows_dataset
from lib.device import pick_device
from lib.folds import read_folds, split_fold
from lib.model import create_model
from lib.params import load_params
from lib.train import TrainConfig, as_metrics, fit
from stages.common import FOLDS_CSV, IMAGES_DIR, STATS_JSON, fold_argument, model_dir, run

KEYS = ["arch", "pretrained", "img_size", "epochs", "batch_size", "lr", "optimizer", "momentum",
        "weight_decay", "warmup_epochs", "workers", "seed"]


def main() -> None:
    fold = fold_argument()
    p = load_params(KEYS)
    torch.manual_seed(p["seed"])
    folds = read_folds(FOLDS_CSV)
    train_rows, val_rows = split_fold(folds, fold)
    classes = sorted(int(label) for label in set(folds["label"]))
    stats = json.loads(STATS_JSON.read_text())
    loaders = {}
    for name, rows, train in (("train", train_rows, True), ("val", val_rows, False)):
        transform = build_transforms(img_size=p["img_size"], mean=stats["mean"], std=stats["std"],
                                     train=train)
        dataset = rows_dataset(rows, images_dir=IMAGES_DIR, classes=classes, transform=transform)
        loaders[name] = make_loader(dataset, batch_size=p["batch_size"], shuffle=train,
                                    workers=p["workers"], seed=p["seed"])
    model = create_model(p["arch"], num_classes=len(classes), pretrained=p["pretrained"])
    config = TrainConfig(**{k: p[k] for k in ("epochs", "lr", "optimizer", "momentum",
                                              "weight_decay", "warmup_epochs")})
    with Live(dir=str(model_dir(fold) / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        def log_epoch(result):
            for name, value in as_metrics(result).items():
                live.log_metric(name, value)
            live.next_step()

        fit(model, train_loader=loaders["train"], val_loader=loaders["val"], config=config,
            device=pick_device(), fold=fold, on_epoch=log_epoch)
    save_checkpoint(model_dir(fold) / "model.pt", model=model, arch=p["arch"], classes=classes,
                    mean=stats["mean"], std=stats["std"], img_size=p["img_size"], params=p)


if __name__ == "__main__":
    run(main)
