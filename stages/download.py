"""download: every image of the competition (downloaded from its URL lists, or copied from its
train/ and test/ folders) -> data/images (ImageFolder layout), data/classes.csv (label_id,name),
data/download_report.json (counts per outcome and reason) and data/download_failures.csv;
images no longer listed move to data/images_removed, and back from there when listed again;
data/images/.sources.tsv records each image's source version, so a changed source is fetched
again (URLs: with download.refetch).
SIGINT/SIGTERM stop it cleanly (exit 128 + signal, no report); running it again finishes."""

import logging
import sys
from dataclasses import fields
from pathlib import Path

from lib.acquire.competition_files import write_classes_file
from lib.acquire.download import (
    DownloadInterrupted,
    DownloadSettings,
    download_competition,
    read_failures,
    write_report,
)
from lib.acquire.layouts import read_competition
from lib.common.fileio import remove_stale_temps
from lib.common.params import load_params
from stages import common as out
from stages.common import run
from stages.prechecks import check_before_work

SETTINGS = [field.name for field in fields(DownloadSettings)]
# Knobs that change only how fast the images come, never which bytes are stored: not DVC deps.
SPEED_SETTINGS = ["concurrency", "per_host", "dns_cache_s", "workers"]
PARAMS = [
    "competition",
    "competition_format",
    "id_column",
    "label_column",
    "label_pattern",
    "test_share",
    "download.retry_failures",
    *(f"download.{name}" for name in SETTINGS if name not in SPEED_SETTINGS),
]
SPEED_PARAMS = [f"download.{name}" for name in SPEED_SETTINGS]


def main() -> None:
    params = load_params(PARAMS + SPEED_PARAMS)
    competition = Path(params["competition"])
    found = read_competition(
        competition,
        fmt=params["competition_format"],
        id_column=params["id_column"],
        label_column=params["label_column"],
        label_pattern=params["label_pattern"],
        test_share=params["test_share"],
    )
    check_before_work(found, needs_test=False)  # what would fail the ensemble, before any image
    settings = DownloadSettings(**{name: params[f"download.{name}"] for name in SETTINGS})
    retry = read_failures(out.DOWNLOAD_FAILURES) if params["download.retry_failures"] else None
    try:
        result = download_competition(
            found.records,
            competition_dir=competition,
            images_dir=out.IMAGES_DIR,
            removed_dir=out.IMAGES_REMOVED_DIR,
            settings=settings,
            retry_only=retry,
        )
    except DownloadInterrupted as stop:
        logging.getLogger("stages.download").warning(
            "%s: the images written so far are complete and kept; run again to finish", stop
        )
        sys.exit(128 + stop.signum)
    remove_stale_temps(out.DOWNLOAD_REPORT.parent)  # a killed run's half-written report
    write_classes_file(out.CLASSES_CSV, found.labels, found.class_names)
    write_report(
        result.report,
        result.failures,
        report_path=out.DOWNLOAD_REPORT,
        failures_path=out.DOWNLOAD_FAILURES,
    )


if __name__ == "__main__":
    run(main)
