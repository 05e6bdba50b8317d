"""Command (not a DVC stage): check the submission, then upload it with the official kaggle
tool (`make submit`), with a message naming the run: experiment, arch, image size, folds, TTA
and OOF score.

    python -m commands.submit [--message TEXT] [--dry-run]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from commands.check_submission import check_file
from lib.common.kaggle_cli import (
    check_credentials,
    experiment_name,
    kaggle_executable,
    require_slug,
    submission_message,
)
from lib.common.params import load_params
from lib.infer.inference import PredictConfig
from lib.train.loop import TrainConfig
from stages.common import ENSEMBLE_METRICS, SUBMISSION_CSV, run

PARAMS = ["kaggle_competition", "arch", "img_size", "train_folds", "tta", "ensemble_runs", "metric"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--message", help="default: the run's name, settings and OOF score")
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    args = parser.parse_args()
    p = load_params(PARAMS, rules=TrainConfig.rules() | PredictConfig.rules())
    slug = require_slug(p["kaggle_competition"])
    if not check_file(SUBMISSION_CSV):
        sys.exit(1)
    headline = json.loads(ENSEMBLE_METRICS.read_text()) if ENSEMBLE_METRICS.is_file() else {}
    message = args.message or submission_message(
        name=experiment_name(Path("."), ENSEMBLE_METRICS), params=p, headline=headline
    )
    command = [
        kaggle_executable(),
        "competitions",
        "submit",
        "-c",
        slug,
        "-f",
        str(SUBMISSION_CSV),
        "-m",
        message,
    ]
    print("$ " + " ".join(command[1:6]) + f" {SUBMISSION_CSV} -m {message!r}", flush=True)
    if args.dry_run:
        return
    check_credentials()
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    run(main)
