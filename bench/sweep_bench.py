"""A queued two-experiment sweep (`dvc exp run --queue -S lr=...` x 2, `dvc queue start -j 1`)
on the shrunk demo, timed for two revisions of this project side by side: which stages each
queued experiment ran (from `dvc queue logs`) and the sweep's wall time.

    .venv/bin/python bench/sweep_bench.py [--baseline REV] [--candidate REV]

REV is any git revision of this repository; the candidate defaults to the working tree. Each is
exported into a fresh git + DVC project with the shrunk demo of tests/test_pipeline.py,
reproduced once, committed, then swept.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_pipeline import make_project, ran_stages, run  # noqa: E402

LRS = ("0.001", "0.01")


def export(rev: str | None, into: Path) -> Path:
    """The tree of `rev` (None: the working tree) as a shrunk, committed project."""
    if rev is None:
        return make_project(into / "project")
    source = into / "source"
    source.mkdir()
    archive = subprocess.run(
        ["git", "archive", rev], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return make_project(into / "project", source=source)


def sweep(project: Path) -> tuple[float, dict[str, set[str]]]:
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    start = time.perf_counter()
    for lr in LRS:
        run(["dvc", "exp", "run", "--queue", "-n", f"lr-{lr}", "-S", f"lr={lr}"], project)
    run(["dvc", "queue", "start", "-j", "1"], project)
    while re.search(r"\b(Queued|Running)\b", run(["dvc", "queue", "status"], project)):
        time.sleep(2)
    seconds = time.perf_counter() - start
    stages = {lr: ran_stages(run(["dvc", "queue", "logs", f"lr-{lr}"], project)) for lr in LRS}
    return seconds, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare against")
    parser.add_argument("--candidate", help="git revision (default: the working tree)")
    args = parser.parse_args()
    results = {}
    for label, rev in (("baseline", args.baseline), ("candidate", args.candidate)):
        with tempfile.TemporaryDirectory(prefix=f"sweep-{label}-") as tmp:
            results[label] = sweep(export(rev, Path(tmp)))
    print(f"two queued experiments (lr = {', '.join(LRS)}), dvc queue start -j 1")
    for label, (seconds, stages) in results.items():
        ran = sorted(set().union(*stages.values()))
        print(f"{label:<10} {seconds:7.1f} s  stages run per experiment: {', '.join(ran)}")
    print(f"candidate / baseline wall time: {results['candidate'][0] / results['baseline'][0]:.2f}")


if __name__ == "__main__":
    main()
