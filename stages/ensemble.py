"""ensemble: average the folds' test probabilities, score the out-of-fold predictions, and write
submissions/submission.csv (`id,predicted`, every test id) and metrics/ensemble.json."""

from pathlib import Path

import pandas as pd

from lib.competition import load_split
from lib.ensemble import clip_probs, concat_oof, mean_of_folds, score, target_columns
from lib.errors import UserError
from lib.fileio import write_json
from lib.params import load_params
from lib.predictions import load_predictions
from lib.submission import most_common_label, predicted_labels, write_label_submission
from stages.common import ENSEMBLE_METRICS, SUBMISSION_CSV, predictions_dir, run


def main() -> None:
    params = load_params(["competition", "test_labels", "train_folds", "clip_low", "clip_high"])
    bounds = {"low": params["clip_low"], "high": params["clip_high"]}
    test_json = Path(params["competition"]) / "test.json"
    if not test_json.is_file():
        raise UserError(f"{test_json} not found: no test images to write a submission for")
    folds = params["train_folds"]
    oof_parts = [load_predictions(predictions_dir(k) / "oof.npz") for k in folds]
    tests = [load_predictions(predictions_dir(k) / "test.npz") for k in folds]

    metrics = {f"fold{k}": score(p.probs, target_columns(p.classes, p.targets), **bounds)
               for k, p in zip(folds, oof_parts, strict=True)}
    oof = concat_oof(oof_parts)
    metrics["oof"] = score(oof.probs, target_columns(oof.classes, oof.targets), **bounds)
    holdout_files = [predictions_dir(k) / "holdout.npz" for k in folds]
    if all(path.is_file() for path in holdout_files):
        holdout = mean_of_folds([load_predictions(path) for path in holdout_files])
        metrics["holdout"] = score(holdout.probs,
                                   target_columns(holdout.classes, holdout.targets), **bounds)

    test = mean_of_folds(tests)
    test.probs = clip_probs(test.probs, **bounds)
    labels = predicted_labels(test)
    test_ids = [record.image_id for record in load_split(test_json, "test")]
    filled = write_label_submission(SUBMISSION_CSV, test_ids=test_ids, labels=labels,
                                    fallback_label=most_common_label(oof.targets))
    metrics["submission"] = {"rows": len(test_ids), "filled_missing_images": filled}
    if params["test_labels"]:
        truth = pd.read_csv(params["test_labels"])
        predicted = pd.read_csv(SUBMISSION_CSV).merge(truth, on="id")
        metrics["test"] = {"accuracy": float((predicted["predicted"] == predicted["label"]).mean())}
    write_json(ENSEMBLE_METRICS, metrics)
    print(f"submission: {len(test_ids)} rows ({filled} without an image), "
          f"OOF accuracy {metrics['oof']['accuracy']:.4f}, "
          f"log loss {metrics['oof']['log_loss']:.4f} raw / "
          f"{metrics['oof']['log_loss_clipped']:.4f} clipped")


if __name__ == "__main__":
    run(main)
