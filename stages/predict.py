"""predict@<fold>: TTA probabilities of fold <fold>'s model on its held-out images (out-of-fold),
on the holdout images when there are any, and on the test images
-> predictions/fold<k>/{oof,holdout,test}.npz."""

import logging
import time

import numpy as np
import pandas as pd

from lib.checkpoint import load_checkpoint, model_from_checkpoint
from lib.data import ImageDataset, build_transforms, make_loader, rows_dataset
from lib.device import pick_device, prepare_model
from lib.folds import holdout_rows, read_folds, split_fold
from lib.images import list_images
from lib.params import load_params
from lib.predictions import Predictions, save_predictions
from lib.tta import predict_probs
from stages.common import FOLDS_CSV, IMAGES_DIR, fold_argument, model_dir, predictions_dir, run

log = logging.getLogger("stages.predict")


def main() -> None:
    fold = fold_argument()
    p = load_params(["tta", "batch_size", "workers"])
    checkpoint = load_checkpoint(model_dir(fold) / "model.pt")
    device = pick_device()
    model = prepare_model(model_from_checkpoint(checkpoint), device)
    transform = build_transforms(img_size=checkpoint["img_size"], mean=checkpoint["mean"],
                                 std=checkpoint["std"], train=False)
    classes = np.array(checkpoint["classes"])

    def probs_for(dataset: ImageDataset) -> np.ndarray:
        loader = make_loader(dataset, batch_size=p["batch_size"], shuffle=False,
                             workers=p["workers"])
        start = time.perf_counter()
        probs = predict_probs(model, loader, device=device, tta=p["tta"])
        seconds = time.perf_counter() - start
        log.info("%d images in %.1f s (%.0f images/s, tta=%s)", len(dataset), seconds,
                 len(dataset) / seconds, p["tta"])
        return probs

    def labelled(rows: pd.DataFrame) -> Predictions:
        dataset = rows_dataset(rows, images_dir=IMAGES_DIR, classes=None, transform=transform)
        return Predictions(probs=probs_for(dataset), image_ids=rows["image_id"].to_numpy(),
                           classes=classes, splits=rows["split"].to_numpy(),
                           targets=rows["label"].to_numpy())

    folds = read_folds(FOLDS_CSV)
    save_predictions(predictions_dir(fold) / "oof.npz", labelled(split_fold(folds, fold)[1]))
    holdout = holdout_rows(folds)
    if len(holdout):
        save_predictions(predictions_dir(fold) / "holdout.npz", labelled(holdout))
    test_paths = list_images(IMAGES_DIR / "test")
    test = Predictions(probs=probs_for(ImageDataset(test_paths, None, transform)),
                       image_ids=np.array([int(path.stem) for path in test_paths], np.int64),
                       classes=classes)
    save_predictions(predictions_dir(fold) / "test.npz", test)


if __name__ == "__main__":
    run(main)
