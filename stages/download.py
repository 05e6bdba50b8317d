"""download: every image of the competition (downloaded from its URL lists, or copied from its
train/ and test/ folders) -> data/images (ImageFolder layout), data/classes.csv (label_id,name),
data/download_report.json (counts per outcome and reason) and data/download_failures.csv;
images no longer listed move to data/images_removed, and back from there when listed again;
data/images/.sources.tsv records each image's source version, so a changed source is fetched
again (URLs: with download.refetch).
SIGINT/SIGTERM stop it cleanly (exit 128 + signal, no report); running it again finishes."""

import logging
import sys
from pathlib import Path

from lib.acquire.competition_files import write_classes_file
from lib.acquire.download import (
    DownloadConfig,
    DownloadInterrupted,
    download_competition,
    read_failures,
    write_report,
)
from lib.acquire.layouts import read_competition
from lib.common.fileio import remove_stale_temps
from stages import common as out
from stages.common import run
from stages.prechecks import check_before_work

# Knobs that change only how fast the images come, never which bytes are stored: not DVC deps.
PARAMS, SPEED_PARAMS = DownloadConfig.dep_keys(), DownloadConfig.speed_keys()


def main() -> None:
    config = DownloadConfig.load()
    competition = Path(config.competition)
    found = read_competition(
        competition,
        fmt=config.competition_format,
        id_column=config.id_column,
        label_column=config.label_column,
        label_pattern=config.label_pattern,
        test_share=config.test_share,
    )
    check_before_work(found, needs_test=False)  # what would fail the ensemble, before any image
    retry = read_failures(out.DOWNLOAD_FAILURES) if config.retry_failures else None
    try:
        result = download_competition(
            found.records,
            competition_dir=competition,
            images_dir=out.IMAGES_DIR,
            removed_dir=out.IMAGES_REMOVED_DIR,
            settings=config.settings,
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
