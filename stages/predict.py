"""predict@<fold>: TTA probabilities of fold <fold>'s model on its held-out images (out-of-fold)
and on the test images -> predictions/fold<k>/{oof,test}.npz."""

import logging
import time

import numpy as np

from lib.checkpoint import load_checkpoint, model_from_checkpoint
from lib.data import ImageDataset, build_transforms, make_loader
from lib.device import pick_device, prepare_model
from lib.folds import read_folds, split_fold
from lib.images import list_images
from lib.params import load_params
from lib.predictions import Predictions, save_predictions
from lib.tta import predict_probs
from stages.common import FOLDS_CSV, IMAGES_DIR, fold_argument, model_dir, predictions_dir, run

log = logging.getLogger("stages.predict")


def main() -> None:
    fold = fold_argument()
    params = load_params(["tta", "batch_size", "workers"])
    checkpoint = load_checkpoint(model_dir(fold) / "model.pt")
    device = pick_device()
    model = prepare_model(model_from_checkpoint(checkpoint), device)
    transform = build_transforms(img_size=checkpoint["img_size"], mean=checkpoint["mean"],
                                 std=checkpoint["std"], train=False)
    classes = np.array(checkpoint["classes"])

    def probs_for(paths):
        loader = make_loader(ImageDataset(paths, None, transform), batch_size=params["batch_size"],
                             shuffle=False, workers=params["workers"])
        start = time.perf_counter()
        probs = predict_probs(model, loader, device=device, tta=params["tta"])
        log.info("%d images in %.1f s (%.0f images/s, tta=%s)", len(paths),
                 time.perf_counter() - start, len(paths) / (time.perf_counter() - start),
                 params["tta"])
        return probs

    _, held_out = split_fold(read_folds(FOLDS_CSV), fold)
    oof = Predictions(probs=probs_for([IMAGES_DIR / p for p in held_out["path"]]),
                      image_ids=held_out["image_id"].to_numpy(), classes=classes,
                      splits=held_out["split"].to_numpy(), targets=held_out["label"].to_numpy())
    save_predictions(predictions_dir(fold) / "oof.npz", oof)

    test_paths = list_images(IMAGES_DIR / "test")
    test = Predictions(probs=probs_for(test_paths), classes=classes,
                       image_ids=np.array([int(p.stem) for p in test_paths], dtype=np.int64))
    save_predictions(predictions_dir(fold) / "test.npz", test)


if __name__ == "__main__":
    run(main)
