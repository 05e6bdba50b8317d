"""download: every image of the competition's URL lists -> data/images (ImageFolder layout),
plus data/download_report.json (counts per outcome and reason) and data/download_failures.csv."""

from pathlib import Path

from lib.competition import load_competition
from lib.download import DownloadSettings, download_competition, write_report
from lib.params import load_params
from stages.common import DOWNLOAD_FAILURES, DOWNLOAD_REPORT, IMAGES_DIR, run

SETTINGS = ["concurrency", "per_host", "timeout_s", "retries", "backoff_s", "min_side",
            "max_bytes"]


def main() -> None:
    params = load_params(["competition", *(f"download.{name}" for name in SETTINGS)])
    competition = Path(params["competition"])
    records = load_competition(competition)
    settings = DownloadSettings(**{name: params[f"download.{name}"] for name in SETTINGS})
    result = download_competition(records, competition_dir=competition, images_dir=IMAGES_DIR,
                                  settings=settings)
    write_report(result.report, result.failures, report_path=DOWNLOAD_REPORT,
                 failures_path=DOWNLOAD_FAILURES)


if __name__ == "__main__":
    run(main)
