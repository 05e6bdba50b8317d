"""Command (not a DVC stage): this run, blended with its ensemble_runs (or the runs named), as a
Kaggle dataset and an offline notebook that reproduces its submission (`make kaggle-bundle`).

    python -m commands.bundle [--runs NAME ...] [--wheels] [--gpu] [--out DIR]

Out (DIR, default kaggle/): dataset/ (models/<run>/fold<k>/model.pt, inference.json, code/,
wheels/ with --wheels, dataset-metadata.json) and kernel/ (inference.ipynb,
kernel-metadata.json), replaced as a whole only once complete; then their sizes. Upload both
with `make kaggle-push`.
"""

import argparse
import shutil
from pathlib import Path

from lib.acquire.competition_files import submitting_competition
from lib.acquire.download import DownloadSettings
from lib.common.errors import ParamError
from lib.common.fileio import write_json
from lib.common.params import load_params
from lib.export.bundle import folder_size, temp_folder_beside, write_bundle
from lib.export.kaggle_files import (
    check_slug_length,
    dataset_metadata,
    download_wheels,
    kernel_metadata,
    notebook,
    pinned_wheels,
    write_code,
    write_notebook,
)
from lib.infer.blending import EnsembleConfig
from lib.infer.inference import PredictConfig
from stages import common as out
from stages.common import run

PARAMS = [
    "kaggle_username",
    "kaggle_competition",
    "competition",
    "competition_format",
    "id_column",
    "label_column",
    "test_labels",
    "sample_submission",
    "classes_file",
    "train_folds",
    *PredictConfig.param_keys(),  # the TTA as predict@k runs it
    "ensemble_merge",
    "ensemble_runs",
    "ensemble_weights",
    "prior_correction",
    "target_prior",
    "clip_low",
    "clip_high",
    "submission_format",
    "metric",
    "label_pattern",
    "test_share",
    "download.min_side",
    "download.max_pixels",
    "download.max_side",
    "download.jpeg_quality",
    "download.max_bytes",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        nargs="*",
        metavar="NAME",
        help="experiments or revisions to blend with this run (default: ensemble_runs)",
    )
    parser.add_argument(
        "--wheels",
        action="store_true",
        help="carry the pinned wheels of timm and albumentations (needs PyPI)",
    )
    parser.add_argument("--gpu", action="store_true", help="the notebook runs on a GPU")
    parser.add_argument("--out", type=Path, default=out.KAGGLE_DIR)
    args = parser.parse_args()
    # the image checks of the download, which the notebook runs on the test images
    p = load_params(
        PARAMS, rules=PredictConfig.rules() | DownloadSettings.rules() | EnsembleConfig.rules()
    )
    if not p["kaggle_username"]:
        raise ParamError(
            "kaggle_username is null in params.yaml: set it to your Kaggle user "
            "name; the bundle's dataset and notebook are <user name>/<slug>"
        )
    competition, files = submitting_competition(p, derived_classes=out.CLASSES_CSV)
    slug = p["kaggle_competition"]
    name = slug or competition.folder.name
    dataset_slug, kernel_slug = f"{name}-models", f"{name}-inference"
    check_slug_length(dataset_slug, "dataset")
    build = temp_folder_beside(args.out)
    try:
        dataset, kernel = build / "dataset", build / "kernel"
        dataset.mkdir()
        kernel.mkdir()
        entries = p["ensemble_runs"] if args.runs is None else args.runs
        config = write_bundle(
            dataset,
            root=Path("."),
            params=p,
            entries=entries,
            competition=competition,
            files=files,
            predictions_dir=out.PREDICTIONS_DIR,
            models_dir="models",
            slug=slug,
        )
        write_code(Path("."), dataset / "code")
        if args.wheels:
            download_wheels(dataset / "wheels", pinned_wheels())
        user = p["kaggle_username"]
        write_json(
            dataset / "dataset-metadata.json",
            dataset_metadata(username=user, dataset_slug=dataset_slug, title=dataset_slug),
        )
        write_json(
            kernel / "kernel-metadata.json",
            kernel_metadata(
                username=user,
                kernel_slug=kernel_slug,
                title=kernel_slug,
                dataset_slug=dataset_slug,
                competition=slug,
                gpu=args.gpu,
            ),
        )
        marker = "test.json" if competition.format == "json" else "test"
        write_notebook(
            kernel / "inference.ipynb",
            notebook(
                dataset_slug=dataset_slug,
                competition_folder=name,
                competition_marker=marker,
                title=kernel_slug,
            ),
        )
        if args.out.exists():
            shutil.rmtree(args.out)
        build.rename(args.out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    models = sum(len(m["models"]) for m in config["members"])
    print(
        f"{args.out / 'dataset'}: {folder_size(args.out / 'dataset') / 1e6:.1f} MB "
        f"({models} models of {len(config['members'])} runs, models "
        f"{folder_size(args.out / 'dataset' / 'models') / 1e6:.1f} MB)"
    )
    print(
        f"{args.out / 'kernel'}: inference.ipynb for {user}/{dataset_slug}; upload both with "
        "`make kaggle-push`"
    )


if __name__ == "__main__":
    run(main)
