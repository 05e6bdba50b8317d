"""stats: exact per-channel mean/std of the training images -> data/stats.json."""

from lib.common.fileio import remove_stale_temps, write_json
from lib.common.images import list_images
from lib.prepare.stats import StatsConfig, compute_stats
from stages.common import IMAGES_DIR, STATS_JSON, run, upstream

PARAMS, SPEED_PARAMS = StatsConfig.dep_keys(), StatsConfig.speed_keys()


def main() -> None:
    config = StatsConfig.load()
    remove_stale_temps(STATS_JSON.parent)
    paths = list_images(upstream(IMAGES_DIR / "train", "download"))
    stats = compute_stats(paths, workers=config.workers, size=config.size)
    write_json(STATS_JSON, stats.to_dict())
    print(
        f"stats: {stats.images} images, mean {[round(m, 4) for m in stats.mean]}, "
        f"std {[round(s, 4) for s in stats.std]}"
    )


if __name__ == "__main__":
    run(main)
