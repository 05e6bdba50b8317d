"""Check a submission CSV against the competition before uploading it.

    python -m commands.check_submission [submissions/submission.csv]
        [--format label|proba|topk] [--sample sample_submission.csv]

Lists everything Kaggle would reject (wrong header, missing, duplicate or unknown ids, unknown
labels, more than k or repeated labels in a topk row, NaN or non-numeric values, probabilities
outside [0, 1], rows not summing to 1) and exits 1, or prints OK and exits 0. The expectations
come from params.yaml (the competition's test ids, classes_file or its labels,
submission_format, metric (k of map@k), sample_submission);
the options override the format and the sample.
"""

import argparse
import sys
from pathlib import Path

from lib.acquire.competition_files import submitting_competition
from lib.common.errors import UserError
from lib.common.params import load_params
from lib.infer.shapes import top_k
from lib.infer.submission import (
    FORMATS,
    check_submission,
    competition_class_names,
    competition_layout,
)
from stages.common import CLASSES_CSV, SUBMISSION_CSV, run, upstream
from stages.prechecks import SUBMISSION_PARAMS

PARAMS = SUBMISSION_PARAMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=SUBMISSION_CSV)
    parser.add_argument("--format", choices=FORMATS, help="default: submission_format")
    parser.add_argument("--sample", type=Path, help="default: sample_submission")
    args = parser.parse_args()
    if not check_file(args.csv, fmt=args.format, sample=args.sample):
        sys.exit(1)


def check_file(csv: Path, *, fmt: str | None = None, sample: Path | None = None) -> bool:
    """Print what Kaggle would reject in `csv` (or OK); True when nothing. `fmt` and `sample`
    override the params."""
    p = load_params(PARAMS)
    if csv == SUBMISSION_CSV:
        upstream(SUBMISSION_CSV, "ensemble")
    elif not csv.is_file():
        raise UserError(f"{csv}: file not found")
    competition, files = submitting_competition(p, derived_classes=CLASSES_CSV, test_labels=False)
    fmt = fmt or p["submission_format"]
    names = competition_class_names(files.classes_file, competition)
    layout = competition_layout(
        fmt,
        competition,
        names=names,
        sample=sample or files.sample_submission,
        k=top_k(fmt, p["metric"]),
    )
    problems = check_submission(csv, layout)
    for problem in problems:
        print(f"{csv}: {problem}")
    if problems:
        print(f"{csv}: {len(problems)} problems: Kaggle would reject it", file=sys.stderr)
        return False
    print(
        f"{csv}: OK ({len(layout.ids)} rows, {fmt} format, header "
        f"{','.join(layout.header[:4])}{',...' if len(layout.header) > 4 else ''})"
    )
    return True


if __name__ == "__main__":
    run(main)
