"""folds: stratified k-fold assignment of the labelled images -> data/folds.csv."""

from lib.fileio import atomic_path
from lib.folds import assign_folds, scan_labelled, summarize
from lib.params import load_params
from stages.common import FOLDS_CSV, IMAGES_DIR, run


def main() -> None:
    params = load_params(["folds", "seed", "pool_validation"])
    splits = ["train", "validation"] if params["pool_validation"] else ["train"]
    images = scan_labelled(IMAGES_DIR, splits)
    folds = assign_folds(images, folds=params["folds"], seed=params["seed"])
    with atomic_path(FOLDS_CSV) as tmp:
        folds.to_csv(tmp, index=False)
    print(summarize(folds))


if __name__ == "__main__":
    run(main)
