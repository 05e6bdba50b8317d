"""stats: exact per-channel mean/std of the training images -> data/stats.json."""

from lib.common.fileio import remove_stale_temps, write_json
from lib.common.images import list_images
from lib.common.params import load_params
from lib.prepare.stats import compute_stats
from stages.common import IMAGES_DIR, STATS_JSON, run, upstream

PARAMS = ["stats.resolution"]
SPEED_PARAMS = ["stats.workers"]  # processes: the sums are exact whatever their number


def main() -> None:
    params = load_params(PARAMS + SPEED_PARAMS)
    resolution = params["stats.resolution"]
    remove_stale_temps(STATS_JSON.parent)
    paths = list_images(upstream(IMAGES_DIR / "train", "download"))
    stats = compute_stats(
        paths, workers=params["stats.workers"], size=None if resolution == "native" else resolution
    )
    write_json(STATS_JSON, stats.to_dict())
    print(
        f"stats: {stats.images} images, mean {[round(m, 4) for m in stats.mean]}, "
        f"std {[round(s, 4) for s in stats.std]}"
    )


if __name__ == "__main__":
    run(main)
