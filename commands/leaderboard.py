"""Command (not a DVC stage): every experiment with only the params it changed and its headline
numbers (OOF accuracy, log loss and the competition's metric, test accuracy when answers are
known), best OOF `metric` first, one table per competition; failed queued experiments are
listed with the line that says why (`make leaderboard`). Reads `dvc exp show --json` and the
failed experiments' logs.

    python -m commands.leaderboard [--all] [--width 120]
"""

import argparse
import json
import shutil
import subprocess

from lib.common.errors import UserError
from lib.experiments.leaderboard import (
    by_competition,
    entries,
    group_metric,
    ranked,
    render,
    render_failures,
)
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
    for competition, group in by_competition(rows).items():
        metric = group_metric(group)
        print(
            f"competition {competition}: ranked by OOF {metric} "
            f"({'lower' if metric == 'log_loss' else 'higher'} is better)"
        )
        print(render(ranked(group, metric=metric), width=args.width, metric=metric))
        failures = render_failures(group, width=args.width)
        print(f"{failures}\n" if failures else "")
    print(
        "`dvc exp apply <name>`: bring one into the workspace; `dvc queue logs <name>`: the "
        "whole log of a failed one"
    )


if __name__ == "__main__":
    run(main)
