"""predict@<fold>: TTA probabilities of fold <fold>'s model on its held-out images (out-of-fold),
on the holdout images when there are any, and on the test images
-> predictions/fold<k>/{oof,holdout,test}.npz, each with the class prior the model was trained
under (uniform when training balanced the classes), and the throughput printed."""

import time

import numpy as np
import pandas as pd

from lib.checkpoint import load_checkpoint, model_from_checkpoint
from lib.data import ImageDataset, build_transforms, decode_size, rows_dataset
from lib.device import inference_loader, pick_device, prepare_model
from lib.folds import holdout_rows, read_folds, split_fold
from lib.images import list_images
from lib.params import load_params
from lib.predictions import Predictions, save_fold_predictions, training_prior
from lib.tta import load_size, predict_probs, tta_views
from stages.common import FOLDS_CSV, IMAGES_DIR, fold_argument, model_dir, predictions_dir, run

PARAMS = ["tta", "tta_merge", "tta_crop", "tta_scales"]
# Inference in eval mode: the batch size and loader processes change only the speed.
SPEED_PARAMS = ["batch_size", "workers"]


def main() -> None:
    fold = fold_argument()
    p = load_params(PARAMS + SPEED_PARAMS)
    checkpoint = load_checkpoint(model_dir(fold) / "model.pt")
    device = pick_device()
    model = prepare_model(model_from_checkpoint(checkpoint), device)
    img_size = checkpoint["img_size"]
    views = tta_views(p["tta"], img_size=img_size, crop=p["tta_crop"], scales=p["tta_scales"])
    size = load_size(img_size, tta=p["tta"], crop=p["tta_crop"])
    transform = build_transforms(img_size=size, mean=checkpoint["mean"], std=checkpoint["std"],
                                 train=False)
    # JPEGs decoded at reduced size as training's validation decodes them: the model is scored
    # and used on the pixels it was checked on, and large photos decode faster
    decoded = decode_size(size, train=False)
    classes = np.array(checkpoint["classes"])
    folds = read_folds(FOLDS_CSV)
    train_rows, oof_rows = split_fold(folds, fold)
    # A class-balanced sampler or loss weights train the model under a uniform prior.
    prior = training_prior(train_rows["label"].to_numpy(), classes,
                           balanced=checkpoint["params"].get("class_balance", "none") != "none")

    def probs_for(dataset: ImageDataset, name: str) -> np.ndarray:
        loader = inference_loader(dataset, batch_size=p["batch_size"], device=device,
                                  workers=p["workers"])
        start = time.perf_counter()
        probs = predict_probs(model, loader, device=device, views=views, merge=p["tta_merge"],
                              desc=f"fold {fold} {name}")
        seconds = max(time.perf_counter() - start, 1e-9)
        print(f"fold {fold} {name}: {len(dataset)} images x {len(views)} views "
              f"(tta={p['tta']}, {p['tta_merge']}) in {seconds:.1f} s: "
              f"{len(dataset) / seconds:.0f} images/s, {len(dataset) * len(views) / seconds:.0f} "
              f"views/s on {device.type}", flush=True)
        return probs

    def labelled(rows: pd.DataFrame, name: str) -> Predictions:
        dataset = rows_dataset(rows, images_dir=IMAGES_DIR, classes=None, transform=transform,
                               decode_size=decoded)
        return Predictions(probs=probs_for(dataset, name), image_ids=rows["image_id"].to_numpy(),
                           classes=classes, splits=rows["split"].to_numpy(),
                           targets=rows["label"].to_numpy(), prior=prior)

    splits = {"oof": labelled(oof_rows, "oof")}
    holdout = holdout_rows(folds)
    if len(holdout):
        splits["holdout"] = labelled(holdout, "holdout")
    test_paths = list_images(IMAGES_DIR / "test")
    test_set = ImageDataset(test_paths, None, transform, decode_size=decoded)
    splits["test"] = Predictions(probs=probs_for(test_set, "test"),
                                 image_ids=np.array([int(path.stem) for path in test_paths],
                                                    np.int64),
                                 classes=classes, prior=prior)
    save_fold_predictions(predictions_dir(fold), splits)


if __name__ == "__main__":
    run(main)
