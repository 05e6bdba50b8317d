"""What every stage shares: the paths of the pipeline's outs, `upstream` (an out a stage reads
must be there, else one line naming the stage that makes it) and a `main` wrapper that sets up
logging and turns a user's mistake into one line on stderr (exit code 2), not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from lib.common.errors import UserError

# Outs, exactly as dvc.yaml declares them.
IMAGES_DIR = Path("data/images")
# Not an out: images the lists no longer name, kept for when they are listed again
# (lib.acquire.reconcile's default beside IMAGES_DIR); git-ignored.
IMAGES_REMOVED_DIR = Path("data/images_removed")
DOWNLOAD_REPORT = Path("data/download_report.json")
DOWNLOAD_FAILURES = Path("data/download_failures.csv")
CLASSES_CSV = Path("data/classes.csv")  # label_id,name of the competition's labels
STATS_JSON = Path("data/stats.json")
FOLDS_CSV = Path("data/folds.csv")
FOLDS_SUMMARY = Path("data/folds_summary.json")
SUBMISSION_CSV = Path("submissions/submission.csv")
HISTORY_DIR = Path("submissions/history")  # not an out: every submission written, kept
ENSEMBLE_METRICS = Path("metrics/ensemble.json")  # the headline: `dvc exp show` columns
ENSEMBLE_DETAIL = Path("metrics/ensemble_detail.json")  # per fold, per run, raw and clipped
PER_CLASS_CSV = Path("metrics/per_class.csv")
CONFUSION_CSV = Path("metrics/oof_confusion.csv")
TOP_LOSSES_PNG = Path("metrics/top_losses.png")
PREDICTIONS_DIR = Path("predictions")
# Not an out: `make kaggle-bundle` writes the dataset and notebook here (git-ignored).
KAGGLE_DIR = Path("kaggle")


def model_dir(fold: int) -> Path:
    return Path("models") / f"fold{fold}"


def predictions_dir(fold: int) -> Path:
    return PREDICTIONS_DIR / f"fold{fold}"


def upstream(path: Path, stage: str) -> Path:
    """`path` itself, once it exists; else a UserError naming `stage`, the dvc.yaml stage whose
    out it is (``train@0`` for a foreach stage's item)."""
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro {stage}` to make it")
    return path


def run(main: Callable[[], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def fold_argument(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--fold", type=int, required=True)
    return parser.parse_args(argv).fold
