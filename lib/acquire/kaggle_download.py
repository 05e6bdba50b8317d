"""Get a competition's files with the official kaggle tool and unzip them into a folder.

In: the competition's slug, the folder to fill (``data/<slug>``) and the ``kaggle`` executable.
Out: the folder, holding what the competition's zip holds (zips inside it unpacked too, as older
competitions ship ``train.zip``); or a one-line UserError (the tool failed, no zip, an unsafe
member). The folder appears whole or not at all: everything is unpacked into a temp folder
beside it, then renamed; a folder already there is never overwritten.
"""

from __future__ import annotations

import subprocess
import tempfile
import zipfile
from pathlib import Path

from lib.common.errors import UserError
from lib.common.fileio import TMP_PREFIX


def download_and_unzip(slug: str, target: Path, *, kaggle: str) -> Path:
    """``kaggle competitions download -c slug`` into a temp folder, unzipped into ``target``."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise UserError(
            f"{target} already holds files: move it away (or point competition at "
            "it) to download again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX, dir=target.parent) as tmp:
        zips_dir, staged = Path(tmp) / "zips", Path(tmp) / target.name
        zips_dir.mkdir()
        command = [kaggle, "competitions", "download", "-c", slug, "-p", str(zips_dir)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise UserError(
                f"`kaggle competitions download -c {slug}` failed (exit "
                f"{done.returncode}): {said[-1] if said else 'no message'}; have "
                "you accepted the competition's rules on its Kaggle page?"
            )
        archives = sorted(zips_dir.glob("*.zip"))
        if not archives:
            raise UserError(f"`kaggle competitions download -c {slug}` wrote no zip file")
        staged.mkdir()
        for archive in archives:
            unzip(archive, staged)
        for inner in sorted(staged.glob("*.zip")):  # train.zip, test.zip in older competitions
            unzip(inner, staged)
            inner.unlink()
        if target.exists():
            target.rmdir()  # empty, checked above
        staged.rename(target)
    return target


def unzip(archive: Path, folder: Path) -> None:
    """Extract ``archive`` into ``folder``; a member that would land outside it (``../x``, an
    absolute path) is a UserError, and nothing of the archive is extracted."""
    root = folder.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise UserError(
                        f"{archive}: member {member!r} would be written outside "
                        f"{folder}; not extracted"
                    )
            zipped.extractall(folder)
    except zipfile.BadZipFile as err:
        raise UserError(f"{archive}: not a readable zip file ({err})") from None
