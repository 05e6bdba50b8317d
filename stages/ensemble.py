"""ensemble: merge the folds' predictions (and those of other runs listed in ensemble_runs),
score the out-of-fold predictions raw, clipped and prior-corrected, and write the submission.

Out: submissions/submission.csv (label or proba format, every test id, checked as Kaggle
would), metrics/ensemble.json (the headline numbers), metrics/ensemble_detail.json (per fold,
per run, raw, clipped and prior-corrected), metrics/per_class.csv, metrics/oof_confusion.csv
and metrics/top_losses.png (for `dvc plots show`).

`python -m stages.ensemble --summary` prints the last run's figures again (`make run` ends
with it, so they show even when DVC had nothing to re-run).
"""

import json
import logging
import os
import sys
from pathlib import Path

from lib.competition_files import competition_files
from lib.ensemble import RunPredictions, clip_probs, correct_prior, most_probable_column
from lib.errors import UserError
from lib.fileio import remove_stale_temps, write_json
from lib.folds import read_folds
from lib.history import keep_copy
from lib.images import list_images
from lib.params import load_params
from lib.predictions import check_test_ids
from lib.report import write_oof_reports
from lib.scoring import blend_runs, detail_scores, headline, summary, test_scores
from lib.submission import (
    build_submission,
    competition_class_names,
    competition_layout,
    write_submission,
)
from stages.common import (
    CONFUSION_CSV,
    ENSEMBLE_DETAIL,
    ENSEMBLE_METRICS,
    FOLDS_CSV,
    HISTORY_DIR,
    IMAGES_DIR,
    PER_CLASS_CSV,
    PREDICTIONS_DIR,
    SUBMISSION_CSV,
    TOP_LOSSES_PNG,
    predictions_dir,
    run,
    upstream,
)

PARAMS = ["competition", "test_labels", "train_folds", "clip_low", "clip_high", "ensemble_merge",
          "ensemble_runs", "ensemble_weights", "prior_correction", "target_prior",
          "submission_format", "sample_submission", "classes_file"]
SPEED_PARAMS: list[str] = []


def main() -> None:
    p = load_params(PARAMS)
    competition, bounds = Path(p["competition"]), {"low": p["clip_low"], "high": p["clip_high"]}
    if not (competition / "test.json").is_file():
        raise UserError(f"{competition / 'test.json'} not found: no test images to write a "
                        "submission for")
    files = competition_files(competition, **{k: p[k] for k in
                                              ("classes_file", "test_labels", "sample_submission")})
    how = p["ensemble_merge"]
    for fold in p["train_folds"]:
        upstream(predictions_dir(fold), f"predict@{fold}")
    runs = [RunPredictions(PREDICTIONS_DIR, folds=p["train_folds"], how=how)]
    runs += [RunPredictions(Path(folder), how=how) for folder in p["ensemble_runs"]]
    names = competition_class_names(files.classes_file, competition)
    layout = competition_layout(p["submission_format"], competition, names=names,
                                sample=files.sample_submission, extra_labels=runs[0].test.classes)
    on_disk = [path.stem for path in list_images(IMAGES_DIR / "test")] \
        if (IMAGES_DIR / "test").is_dir() else None
    for member in runs:
        check_test_ids(member.test, expected=layout.ids, on_disk=on_disk, source=str(member.folder),
                       rerun="dvc repro predict" if member is runs[0] else "dvc exp run "
                       "in that experiment, then copy its predictions/ again")
    blend = blend_runs(runs, how=how, weights=p["ensemble_weights"] or None,
                       target_prior=p["target_prior"])
    detail = detail_scores(runs, blend, **bounds)

    prior = blend.target if p["prior_correction"] else blend.source
    final = correct_prior(blend.test.probs, source=blend.source, target=blend.target) \
        if p["prior_correction"] else blend.test.probs
    blend.test.probs = clip_probs(final, **bounds)
    fallback_column = most_probable_column(prior, blend.source)
    frame, filled = build_submission(layout, blend.test,
                                     fallback_probs=clip_probs(prior[None], **bounds)[0],
                                     fallback_column=fallback_column)
    detail["submission"] = {"rows": len(frame), "filled_missing_images": filled}
    if files.test_labels:
        detail["test"] = test_scores(files.test_labels, layout, blend.test, prior=prior,
                                     fallback_column=fallback_column)
    for folder in (SUBMISSION_CSV.parent, ENSEMBLE_METRICS.parent):
        remove_stale_temps(folder)
    write_oof_reports(blend.oof, names, folds=read_folds(upstream(FOLDS_CSV, "folds")),
                      images_dir=IMAGES_DIR,
                      per_class_csv=PER_CLASS_CSV, confusion_csv=CONFUSION_CSV,
                      top_losses_png=TOP_LOSSES_PNG)
    numbers = headline(detail, prior_correction=p["prior_correction"])
    write_submission(SUBMISSION_CSV, frame, layout)
    write_json(ENSEMBLE_DETAIL, detail)
    write_json(ENSEMBLE_METRICS, numbers)
    # DVC_ROOT: a queued experiment runs in a temporary copy; its history goes to the project
    by_loss = p["submission_format"] == "proba"
    kept = keep_copy(SUBMISSION_CSV, Path(os.environ.get("DVC_ROOT", ".")) / HISTORY_DIR,
                     experiment=os.environ.get("DVC_EXP_NAME"),
                     score_name="oof-logloss" if by_loss else "oof-acc",
                     score=numbers["oof"]["log_loss" if by_loss else "accuracy"])
    logging.getLogger("stages.ensemble").info("kept a copy of the submission: %s", kept)
    print(summary(detail, p["submission_format"]))


def print_summary() -> None:
    """``--summary``: the last run's figures again, without recomputing anything."""
    if not ENSEMBLE_DETAIL.is_file():
        raise UserError(f"{ENSEMBLE_DETAIL} not found: run `dvc repro` first")
    detail = json.loads(ENSEMBLE_DETAIL.read_text())
    print(summary(detail, load_params(["submission_format"])["submission_format"]))


if __name__ == "__main__":
    run(print_summary if sys.argv[1:] == ["--summary"] else main)
