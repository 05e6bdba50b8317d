"""train@<fold>: fine-tune one model on every fold but <fold>, validating on <fold>.

Out: models/fold<k>/model.pt (weights + provenance) and models/fold<k>/live (DVCLive metrics).
"""

import json

import torch
from dvclive import Live

from lib.checkpoint import save_checkpoint
from lib.data import ImageDataset, build_transforms, make_loader
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
    params = load_params(KEYS)
    torch.manual_seed(params["seed"])
    train_rows, val_rows = split_fold(read_folds(FOLDS_CSV), fold)
    classes = sorted(int(label) for label in set(train_rows["label"]) | set(val_rows["label"]))
    column = {label: i for i, label in enumerate(classes)}
    stats = json.loads(STATS_JSON.read_text())

    def loader(rows, train: bool):
        transform = build_transforms(img_size=params["img_size"], mean=stats["mean"],
                                     std=stats["std"], train=train)
        dataset = ImageDataset([IMAGES_DIR / p for p in rows["path"]],
                               [column[label] for label in rows["label"]], transform)
        return make_loader(dataset, batch_size=params["batch_size"], shuffle=train,
                           workers=params["workers"], seed=params["seed"])

    model = create_model(params["arch"], num_classes=len(classes), pretrained=params["pretrained"])
    config = TrainConfig(**{k: params[k] for k in ("epochs", "lr", "optimizer", "momentum",
                                                   "weight_decay", "warmup_epochs")})
    with Live(dir=str(model_dir(fold) / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        def log_epoch(result):
            for name, value in as_metrics(result).items():
                live.log_metric(name, value)
            live.next_step()

        fit(model, train_loader=loader(train_rows, True), val_loader=loader(val_rows, False),
            config=config, device=pick_device(), fold=fold, on_epoch=log_epoch)
    save_checkpoint(model_dir(fold) / "model.pt", model=model, arch=params["arch"],
                    classes=classes, mean=stats["mean"], std=stats["std"],
                    img_size=params["img_size"], params=params)


if __name__ == "__main__":
    run(main)
