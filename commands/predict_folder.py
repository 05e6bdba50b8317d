"""Command (not a DVC stage): predict a folder of new images with the trained fold models, with
the run's TTA and ensemble merge from params.yaml; no DVC needed.

    python -m commands.predict_folder FOLDER [--runs models runs/b3/models] [--out preds.csv]
                                             [--top-k 3]

Writes a CSV (by default outputs/<FOLDER's name>.csv: outputs/ is git-ignored): id (the file
stem), predicted (the class name when a classes file is known, else the label id), then
label_1, prob_1, ... label_k, prob_k. Files that do not decode are skipped, each named in a
warning. --out may be a folder: the CSV is then <out>/<FOLDER's name>.csv.
"""

import argparse
from pathlib import Path

from commands.class_names import class_names
from lib.common.fileio import atomic_path
from lib.common.params import load_params
from lib.infer.folder_predictions import fold_models, folder_images, predict_images, top_k_table
from lib.infer.inference import PredictConfig
from lib.train.device import pick_device
from stages.common import run

# The TTA (and its speed knobs) as predict@k reads it, and these:
PARAMS = ["ensemble_merge", "competition", "classes_file"]
OUTPUTS_DIR = Path("outputs")  # what commands write for the user (not a DVC out); git-ignored


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        epilog="TTA (tta, tta_merge, tta_crop, tta_scales), ensemble_merge, batch_size and "
        "workers come from params.yaml.",
    )
    parser.add_argument(
        "folder",
        type=Path,
        help="the images to predict (their file stems are the ids; sub-folders are searched too)",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[Path("models")],
        help="folders holding fold<k>/model.pt, all merged (default: models)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"the CSV to write (default: {OUTPUTS_DIR}/<FOLDER's name>.csv; "
        f"{OUTPUTS_DIR}/ is git-ignored)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=3,
        help="how many classes each row lists, most probable first (default: 3)",
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    out = args.out or OUTPUTS_DIR / f"{args.folder.resolve().name}.csv"
    if out.is_dir():  # a folder: the table goes in it
        out = out / f"{args.folder.resolve().name}.csv"
    config, p = PredictConfig.load(), load_params(PARAMS)
    paths, ids = folder_images(args.folder)
    models = fold_models(args.runs)
    predictions = predict_images(
        paths,
        ids,
        models,
        device=pick_device(),
        config=config,
        merge=p["ensemble_merge"],
    )
    names = class_names(p["competition"], p["classes_file"]) or None
    table = top_k_table(predictions, names, max(args.top_k, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    print(
        f"{out}: {len(table)} images, {len(models)} models merged by "
        f"{p['ensemble_merge']}, tta {config.tta}"
    )


if __name__ == "__main__":
    run(main)
