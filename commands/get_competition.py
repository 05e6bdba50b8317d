"""Command (not a DVC stage): get the competition named by kaggle_competition with the official
kaggle tool, unzip it into data/<slug> (`make download-competition`) and track it with DVC
(`dvc add`; its .dvc file and .gitignore staged for your commit), so queued and `--temp`
experiments, which run in a copy of what git and DVC track, have it; then point `competition`
at that folder.

    python -m commands.get_competition [--into FOLDER] [--no-dvc-add]
"""

import argparse
from pathlib import Path

from lib.acquire.kaggle_download import download_and_unzip
from lib.acquire.tracking import track_folder
from lib.common.kaggle_cli import check_credentials, kaggle_executable, require_slug
from lib.common.params import load_params
from stages.common import run

PARAMS = ["kaggle_competition"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=Path, help="default: data/<kaggle_competition>")
    parser.add_argument(
        "--no-dvc-add",
        action="store_true",
        help="leave the folder untracked (queued and --temp experiments then cannot see it)",
    )
    args = parser.parse_args()
    slug = require_slug(load_params(PARAMS)["kaggle_competition"])
    kaggle = kaggle_executable()
    check_credentials()
    target = download_and_unzip(slug, args.into or Path("data") / slug, kaggle=kaggle)
    print(
        f"{slug}: unzipped into {target}; set `competition: {target}` in params.yaml "
        "(competition_format: auto finds its layout)"
    )
    if not args.no_dvc_add:
        dvc_file = track_folder(target)
        print(
            f"{target}: tracked by DVC; {dvc_file} and {target.parent}/.gitignore are staged: "
            f"commit them (git commit -m 'competition {slug}') before queueing experiments"
        )


if __name__ == "__main__":
    run(main)
