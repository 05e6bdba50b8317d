"""predict@<fold>: TTA probabilities of fold <fold>'s model on its held-out images (out-of-fold),
on the holdout images when there are any, and on the test images
-> predictions/fold<k>/{oof,holdout,test}.npz, written as one unit, each with the class prior
the model was trained under, and the throughput printed."""

from lib.common.errors import UserError
from lib.common.fileio import remove_stale_temps
from lib.common.images import list_test_images
from lib.infer.fold_predictions import predict_fold
from lib.infer.inference import PredictConfig, prepare_inference
from lib.infer.predictions import save_fold_predictions
from lib.prepare.folds import read_folds
from lib.train.checkpoint import load_checkpoint, model_from_checkpoint
from lib.train.device import pick_device
from stages.common import (
    FOLDS_CSV,
    IMAGES_DIR,
    PREDICTIONS_DIR,
    fold_argument,
    model_dir,
    predictions_dir,
    run,
    upstream,
)
from stages.prechecks import check_before_work

# Inference in eval mode: the batch size and loader processes change only the speed.
PARAMS, SPEED_PARAMS = PredictConfig.dep_keys(), PredictConfig.speed_keys()


def main() -> None:
    fold = fold_argument()
    config = PredictConfig.load()
    check_before_work()
    model_file = upstream(model_dir(fold) / "model.pt", f"train@{fold}")
    checkpoint = load_checkpoint(model_file)
    folds = read_folds(upstream(FOLDS_CSV, "folds"))
    test_paths, test_ids = list_test_images(IMAGES_DIR / "test")
    if not test_ids:  # predicting none would end in a submission of no rows
        raise UserError(
            f"{IMAGES_DIR / 'test'}: no test images to predict; run `dvc repro "
            "download` (the competition's test images: test.json or test/)"
        )
    inference = prepare_inference(
        model_from_checkpoint(checkpoint, model_file),
        checkpoint,
        device=pick_device(),
        config=config,
    )
    splits = predict_fold(
        inference,
        checkpoint,
        folds=folds,
        fold=fold,
        images_dir=IMAGES_DIR,
        test_paths=test_paths,
        test_ids=test_ids,
    )
    remove_stale_temps(PREDICTIONS_DIR)
    save_fold_predictions(predictions_dir(fold), splits)


if __name__ == "__main__":
    run(main)
