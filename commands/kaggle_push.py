"""Command (not a DVC stage): upload the bundle `make kaggle-bundle` wrote, with the official
kaggle tool (`make kaggle-push`): the dataset (`kaggle datasets create`, or `version` when it
exists), then, once Kaggle has processed it, the notebook (`kaggle kernels push`).

    python -m commands.kaggle_push [--out DIR] [--message TEXT] [--dry-run]
"""

import argparse
import json
import time
from pathlib import Path

from lib.common.errors import UserError
from lib.common.kaggle_cli import check_credentials, kaggle_executable
from lib.export.kaggle_push import dataset_exists, push_commands, run_kaggle, wait_until_ready
from stages.common import KAGGLE_DIR, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=KAGGLE_DIR, help="the bundle's folder")
    parser.add_argument(
        "--message", default="models from make kaggle-bundle", help="the dataset version's note"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()
    dataset, kernel = args.out / "dataset", args.out / "kernel"
    for folder, name in ((dataset, "dataset-metadata.json"), (kernel, "kernel-metadata.json")):
        if not (folder / name).is_file():
            raise UserError(f"{folder / name}: not found: run `make kaggle-bundle` first")
    dataset_id = json.loads((dataset / "dataset-metadata.json").read_text())["id"]
    kaggle = kaggle_executable()
    if not args.dry_run:
        check_credentials()
    exists = not args.dry_run and dataset_exists(kaggle, dataset_id)
    upload, push = push_commands(
        kaggle, dataset=dataset, kernel=kernel, exists=exists, message=args.message
    )
    for command in (upload, push):
        print("$ " + " ".join(command[1:]), flush=True)
    if args.dry_run:
        return
    run_kaggle(upload)
    wait_until_ready(kaggle, dataset_id, sleep=time.sleep)
    output = run_kaggle(push)
    print(output.strip().splitlines()[-1] if output.strip() else "pushed")


if __name__ == "__main__":
    run(main)
