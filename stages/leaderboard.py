"""Command (not a DVC stage): every experiment with only the params it changed and its headline
numbers (OOF accuracy and log loss, test accuracy when answers are known), best OOF first
(`make leaderboard`). Reads `dvc exp show --json`.

    python -m stages.leaderboard [--all] [--width 120]
"""

import argparse
import json
import shutil
import subprocess

from lib.common.errors import UserError
from lib.common.params import load_params
from lib.experiments.leaderboard import entries, ranked, render
from stages.common import ENSEMBLE_METRICS, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="experiments of every commit")
    parser.add_argument("--width", type=int, default=shutil.get_terminal_size((120, 24)).columns)
    args = parser.parse_args()
    command = ["dvc", "exp", "show", "--json", *(["--all-commits"] if args.all else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`{' '.join(command)}` failed: {last}")
    rows = entries(json.loads(done.stdout), metrics_file=ENSEMBLE_METRICS.as_posix())
    by_log_loss = load_params(["submission_format"])["submission_format"] == "proba"
    print(render(ranked(rows, by_log_loss=by_log_loss), width=args.width))
    print(f"\nranked by OOF {'log loss' if by_log_loss else 'accuracy'}; "
          "`dvc exp apply <name>` brings one into the workspace")


if __name__ == "__main__":
    run(main)
