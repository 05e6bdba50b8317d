"""ensemble: merge the folds' predictions (and those of the runs in ensemble_runs: experiment
names, git revisions or folders), score them out of fold, and write the submission.

Out: submissions/submission.csv (checked as Kaggle would; a copy kept in submissions/history),
metrics/ensemble.json (the headline), metrics/ensemble_detail.json, metrics/per_class.csv,
metrics/oof_confusion.csv, and the pictures under reports/: the confusion matrix (counts and
per true class), the folds' training curves (read from models/fold<k>/live), the top losses and
report.html, all of them on one page that needs no network. `--summary` prints the last
figures again.
"""

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lib.acquire.competition_files import submitting_competition
from lib.common.fileio import remove_stale_temps, write_json
from lib.common.params import load_params
from lib.experiments.history import keep_submission
from lib.infer.blending import EnsembleConfig, ensemble_competition
from lib.infer.report import write_oof_reports
from lib.infer.report_page import write_run_report
from lib.infer.submission import write_submission
from lib.infer.summary import summary
from lib.infer.teachers import recorded_teaching
from lib.prepare.folds import read_folds
from stages import common as out
from stages.common import IMAGES_DIR, run, upstream

PARAMS, SPEED_PARAMS = EnsembleConfig.dep_keys(), EnsembleConfig.speed_keys()


def main() -> None:
    config = EnsembleConfig.load()
    root = Path(os.environ.get("DVC_ROOT", "."))
    competition, files = submitting_competition(config.values(), derived_classes=out.CLASSES_CSV)
    for fold in config.train_folds:
        upstream(out.predictions_dir(fold), f"predict@{fold}")
    # root: a queued experiment runs in a temporary copy; members and history are the project's
    result = ensemble_competition(
        competition,
        root=root,
        files=files,
        predictions_dir=out.PREDICTIONS_DIR,
        test_images=IMAGES_DIR / "test",
        config=config,
    )
    for folder in (out.SUBMISSION_CSV.parent, out.ENSEMBLE_METRICS.parent, out.REPORTS_DIR):
        remove_stale_temps(folder)
    per_class = write_oof_reports(
        result.oof,
        competition.display_names or result.names,
        folds=read_folds(upstream(out.FOLDS_CSV, "folds")),
        images_dir=IMAGES_DIR,
        per_class_csv=out.PER_CLASS_CSV,
        confusion_csv=out.CONFUSION_CSV,
        top_losses_png=out.TOP_LOSSES_PNG,
        confusion_png=out.CONFUSION_PNG,
        confusion_normalized_png=out.CONFUSION_NORMALIZED_PNG,
    )
    write_run_report(
        out.REPORT_HTML,
        curves_png=out.CURVES_PNG,
        headline=result.headline,
        live_dirs={k: out.model_dir(k) / "live" for k in config.train_folds},
        title=f"{Path(config.competition).name}: {os.environ.get('DVC_EXP_NAME') or 'workspace'}",
        detail=result.detail,
        prior_correction=config.prior_correction,
        by_log_loss=config.metric == "log_loss",
        per_class=per_class,
        figures={
            "Confusion matrix (OOF), counts": out.CONFUSION_PNG,
            "Confusion matrix (OOF), % of each true class": out.CONFUSION_NORMALIZED_PNG,
            "Top losses (OOF): the most confident mistakes": out.TOP_LOSSES_PNG,
        },
    )
    write_submission(out.SUBMISSION_CSV, result.frame, result.layout)
    # what taught the models (pseudo_from, distill_from): the runs and the images per class
    teaching = recorded_teaching({k: out.model_dir(k) / "model.pt" for k in config.train_folds})
    write_json(out.ENSEMBLE_DETAIL, result.detail | teaching)
    write_json(out.ENSEMBLE_METRICS, result.headline)
    keep_submission(
        out.SUBMISSION_CSV,
        root / out.HISTORY_DIR,
        headline=result.headline,
        experiment=os.environ.get("DVC_EXP_NAME"),
        metric=config.metric,
    )
    print_summary(result.detail, config.values())


def print_summary(detail: dict, p: Mapping[str, Any]) -> None:
    print(
        summary(
            detail,
            p["submission_format"],
            p["metric"],
            prior_correction=p["prior_correction"],
            this_run=str(out.PREDICTIONS_DIR),
        )
    )


def summary_again() -> None:
    """`--summary`: the last run's figures (metrics/ensemble_detail.json) printed again; only
    the keys the lines need are read (the competition folder need not be there)."""
    detail = json.loads(upstream(out.ENSEMBLE_DETAIL, "ensemble").read_text())
    keys = ["submission_format", "metric", "prior_correction"]
    print_summary(detail, load_params(keys, rules=EnsembleConfig.rules()))


if __name__ == "__main__":
    run(summary_again if sys.argv[1:] == ["--summary"] else main)
