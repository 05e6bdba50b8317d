"""What every stage shares: the paths of the pipeline's outs, `upstream` (an out a stage reads
must be there, else one line naming the stage that makes it) and a `main` wrapper that sets up
logging and turns a user's mistake into one line on stderr (exit code 2), and Ctrl-C into one
line saying how to go on (exit code 130), not a traceback."""

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
# The run's pictures, cached by DVC (not in git): PNGs to open anywhere, and one offline page.
REPORTS_DIR = Path("reports")
TOP_LOSSES_PNG = REPORTS_DIR / "top_losses.png"
CONFUSION_PNG = REPORTS_DIR / "confusion_counts.png"
CONFUSION_NORMALIZED_PNG = REPORTS_DIR / "confusion_normalized.png"
CURVES_PNG = REPORTS_DIR / "curves.png"
REPORT_HTML = REPORTS_DIR / "report.html"
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


class Interrupted(Exception):
    """Ctrl-C stopped a stage; the message says what was kept and how to go on."""


INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a process stopped by Ctrl-C


def run(main: Callable[[], None]) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
    except KeyboardInterrupt:
        print(
            "interrupted (Ctrl-C): every file written is whole (atomic writes); run the same "
            "command again to finish",
            file=sys.stderr,
        )
        sys.exit(INTERRUPTED_EXIT)


def fold_argument(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--fold", type=int, required=True)
    return parser.parse_args(argv).fold
