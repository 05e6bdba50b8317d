"""Check a submission CSV against the competition before uploading it.

    python -m stages.check_submission [submissions/submission.csv] [--format label|proba]
                                      [--sample sample_submission.csv]

Lists everything Kaggle would reject (wrong header, missing, duplicate or unknown ids, unknown
labels, NaN or non-numeric values, probabilities outside [0, 1], rows not summing to 1) and
exits 1, or prints OK and exits 0. The expectations come from params.yaml (competition's
test.json ids, classes_file or the labels of train.json, submission_format, sample_submission);
the options override the format and the sample.
"""

import argparse
import sys
from pathlib import Path

from lib.errors import UserError
from lib.params import load_params
from lib.submission import FORMATS, check_submission, competition_layout, read_class_names
from stages.common import SUBMISSION_CSV, run, upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=SUBMISSION_CSV)
    parser.add_argument("--format", choices=FORMATS, help="default: submission_format")
    parser.add_argument("--sample", type=Path, help="default: sample_submission")
    args = parser.parse_args()
    p = load_params(["competition", "classes_file", "sample_submission", "submission_format"])
    if args.csv == SUBMISSION_CSV:
        upstream(SUBMISSION_CSV, "ensemble")
    elif not args.csv.is_file():
        raise UserError(f"{args.csv}: file not found")
    competition = Path(p["competition"])
    if not (competition / "test.json").is_file():
        raise UserError(f"{competition / 'test.json'} not found: the test ids come from it")
    sample = args.sample or (Path(p["sample_submission"]) if p["sample_submission"] else None)
    fmt = args.format or p["submission_format"]
    names = read_class_names(Path(p["classes_file"])) if p["classes_file"] else None
    layout = competition_layout(fmt, competition, names=names, sample=sample)
    problems = check_submission(args.csv, layout)
    for problem in problems:
        print(f"{args.csv}: {problem}")
    if problems:
        print(f"{args.csv}: {len(problems)} problems: Kaggle would reject it", file=sys.stderr)
        sys.exit(1)
    print(f"{args.csv}: OK ({len(layout.ids)} rows, {fmt} format, header "
          f"{','.join(layout.header[:4])}{',...' if len(layout.header) > 4 else ''})")


if __name__ == "__main__":
    run(main)
