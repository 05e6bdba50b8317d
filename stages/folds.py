"""folds: stratified, duplicate-aware k-fold assignment of the labelled images that decode
-> data/folds.csv and data/folds_summary.json (which lists the images left out as unreadable)."""

from lib.common.decoded import known_to_decode
from lib.common.fileio import atomic_path, remove_stale_temps, write_json
from lib.common.images import list_images
from lib.prepare.duplicates import content_hashes, group_ids
from lib.prepare.folds import (
    FoldsConfig,
    assign_folds,
    describe,
    drop_unreadable,
    scan_labelled,
    summarize,
)
from stages.common import FOLDS_CSV, FOLDS_SUMMARY, IMAGES_DIR, run, upstream
from stages.prechecks import check_before_work

PARAMS, SPEED_PARAMS = FoldsConfig.dep_keys(), FoldsConfig.speed_keys()


def main() -> None:
    config = FoldsConfig.load()
    upstream(IMAGES_DIR, "download")
    check_before_work()
    remove_stale_temps(FOLDS_CSV.parent)
    splits = [s for s in ("train", "validation") if (IMAGES_DIR / s).is_dir()]
    test_images = list_images(IMAGES_DIR / "test")
    images = scan_labelled(IMAGES_DIR, splits)
    # hashed first: images whose bytes the download already decoded are not decoded again;
    # the test images in the same pass (one pool to start, not two)
    digests = content_hashes([IMAGES_DIR / p for p in images["path"]] + test_images)
    images["content"], test_hashes = digests[: len(images)], digests[len(images) :]
    known = known_to_decode(images["content"], IMAGES_DIR)
    images, unreadable = drop_unreadable(images, images_dir=IMAGES_DIR, known=known)
    hashes = images.pop("content")
    holdout = images["split"] == "validation" if config.validation == "holdout" else None
    folds = assign_folds(
        images,
        folds=config.folds,
        seed=config.seed,
        groups=group_ids(hashes),
        holdout=holdout,
    )
    # train@k depends on this file: with each image's content hash in it, changed bytes of
    # any labelled image (validation ones have no dep of their own) retrain the folds.
    folds["content"] = hashes
    with atomic_path(FOLDS_CSV) as tmp:
        folds.to_csv(tmp, index=False)
    summary = summarize(folds, hashes=hashes, test_hashes=test_hashes) | {"unreadable": unreadable}
    write_json(FOLDS_SUMMARY, summary)
    print(describe(summary))


if __name__ == "__main__":
    run(main)
