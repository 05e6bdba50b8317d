"""ensemble: merge the folds' predictions (and those of the runs in ensemble_runs: folders,
DVC experiment names or git revisions), score the out-of-fold predictions raw, clipped and
prior-corrected, and write the submission.

Out: submissions/submission.csv (checked as Kaggle would; a copy kept in submissions/history),
metrics/ensemble.json (the headline), metrics/ensemble_detail.json, metrics/per_class.csv,
metrics/oof_confusion.csv and metrics/top_losses.png (for `dvc plots show`).
`python -m stages.ensemble --summary` prints the last run's figures again.
"""

import json
import os
import sys
from pathlib import Path

from lib.acquire.competition_files import competition_files
from lib.acquire.layouts import read_test_competition
from lib.common.fileio import remove_stale_temps, write_json
from lib.common.images import list_test_images
from lib.common.params import load_params
from lib.experiments.history import keep_submission
from lib.infer.blending import blend_and_score, check_runs_current, gather_runs
from lib.infer.report import write_oof_reports
from lib.infer.scoring import summary
from lib.infer.submission import competition_class_names, competition_layout, write_submission
from lib.prepare.folds import read_folds
from stages import common as out
from stages.common import IMAGES_DIR, run, upstream

PARAMS = ["competition", "competition_format", "id_column", "label_column", "test_labels",
          "train_folds", "clip_low", "clip_high", "ensemble_merge",
          "ensemble_runs", "ensemble_weights", "prior_correction", "target_prior",
          "submission_format", "sample_submission", "classes_file"]
SPEED_PARAMS: list[str] = []


def main() -> None:
    p = load_params(PARAMS)
    root = Path(os.environ.get("DVC_ROOT", "."))
    competition = read_test_competition(Path(p["competition"]), fmt=p["competition_format"],
                                        id_column=p["id_column"], label_column=p["label_column"])
    files = competition_files(competition.folder, derived_classes=out.CLASSES_CSV, **{
        k: p[k] for k in ("classes_file", "test_labels", "sample_submission")})
    for fold in p["train_folds"]:
        upstream(out.predictions_dir(fold), f"predict@{fold}")
    # root: a queued experiment runs in a temporary copy; members and history are the project's
    runs, commits = gather_runs(out.PREDICTIONS_DIR, folds=p["train_folds"], root=root,
                                entries=p["ensemble_runs"], how=p["ensemble_merge"])
    names = competition_class_names(files.classes_file, competition)
    layout = competition_layout(p["submission_format"], competition, names=names,
                                sample=files.sample_submission, extra_labels=runs[0].test.classes)
    test_dir = IMAGES_DIR / "test"
    check_runs_current(runs, test_ids=layout.ids,
                       on_disk=list_test_images(test_dir)[1] if test_dir.is_dir() else None)
    result = blend_and_score(runs, layout=layout, test_labels=files.test_labels,
                             how=p["ensemble_merge"], weights=p["ensemble_weights"] or None,
                             target_prior=p["target_prior"], low=p["clip_low"],
                             high=p["clip_high"], prior_correction=p["prior_correction"])
    result.detail["members"] = commits
    for folder in (out.SUBMISSION_CSV.parent, out.ENSEMBLE_METRICS.parent):
        remove_stale_temps(folder)
    write_oof_reports(result.oof, names, folds=read_folds(upstream(out.FOLDS_CSV, "folds")),
                      images_dir=IMAGES_DIR, per_class_csv=out.PER_CLASS_CSV,
                      confusion_csv=out.CONFUSION_CSV, top_losses_png=out.TOP_LOSSES_PNG)
    write_submission(out.SUBMISSION_CSV, result.frame, layout)
    write_json(out.ENSEMBLE_DETAIL, result.detail)
    write_json(out.ENSEMBLE_METRICS, result.headline)
    keep_submission(out.SUBMISSION_CSV, root / out.HISTORY_DIR, headline=result.headline,
                    experiment=os.environ.get("DVC_EXP_NAME"),
                    by_log_loss=p["submission_format"] == "proba")
    print(summary(result.detail, p["submission_format"]))


def print_summary() -> None:
    """``--summary``: the last run's figures again, without recomputing anything."""
    detail = json.loads(upstream(out.ENSEMBLE_DETAIL, "ensemble").read_text())
    print(summary(detail, load_params(["submission_format"])["submission_format"]))


if __name__ == "__main__":
    run(print_summary if sys.argv[1:] == ["--summary"] else main)
