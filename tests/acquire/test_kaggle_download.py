"""lib.acquire.kaggle_download and `python -m commands.get_competition`, with a stand-in `kaggle`
executable on PATH that writes a zip (no network)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from lib.acquire.kaggle_download import download_and_unzip, unzip
from lib.common.errors import UserError
from tests.helpers import call_command, one_error_line, repo_params

STAND_IN = f"""#!{sys.executable}
# kaggle competitions download -c <slug> -p <folder>: writes <folder>/<slug>.zip
import io, os, sys, zipfile
args = sys.argv[1:]
if os.environ.get("KAGGLE_STAND_IN_FAIL"):
    sys.exit("403 - Forbidden: you must accept this competition's rules")
slug, folder = args[args.index("-c") + 1], args[args.index("-p") + 1]
inner = io.BytesIO()
with zipfile.ZipFile(inner, "w") as z:
    z.writestr("test/ab12.jpg", b"jpeg bytes")
with zipfile.ZipFile(os.path.join(folder, slug + ".zip"), "w") as z:
    z.writestr("labels.csv", "id,breed\\nab12,whippet\\n")
    z.writestr("train/ab12.jpg", b"jpeg bytes")
    z.writestr("test.zip", inner.getvalue())
"""


@pytest.fixture
def kaggle(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable = bin_dir / "kaggle"
    executable.write_text(STAND_IN)
    executable.chmod(0o755)
    return executable


def get_competition(project: Path, kaggle: Path, **env: str) -> subprocess.CompletedProcess:
    """`commands.get_competition` with the stand-in `kaggle` first on PATH, `project` as HOME, no
    KAGGLE_ variables but those of `env` (the stage and the kaggle tool read them as they run)."""
    params = repo_params() | {"kaggle_competition": "dog-breed-identification"}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        for key in [key for key in os.environ if key.startswith("KAGGLE_")]:
            patch.delenv(key)
        for key, value in {
            "HOME": str(project),
            "PATH": f"{kaggle.parent}{os.pathsep}{os.environ['PATH']}",
            **env,
        }.items():
            patch.setenv(key, value)
        return call_command("get_competition", project)


def test_get_competition_unzips_into_data_slug_and_tracks_it_with_dvc(tmp_path, kaggle):
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    done = get_competition(tmp_path, kaggle, KAGGLE_USERNAME="me", KAGGLE_KEY="k")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "dog-breed-identification"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "labels.csv",
        "test/ab12.jpg",
        "train/ab12.jpg",
    ]
    assert "set `competition: data/dog-breed-identification`" in done.stdout
    # tracked by DVC, its .dvc file and .gitignore staged for the user's commit
    assert "data/dog-breed-identification.dvc and data/.gitignore are staged" in done.stdout
    staged = subprocess.run(
        ["git", "diff", "--cached", "--name-only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"data/dog-breed-identification.dvc", "data/.gitignore"} <= set(staged)
    assert "/dog-breed-identification" in (tmp_path / "data" / ".gitignore").read_text()
    # a second run never overwrites what is there
    again = get_competition(tmp_path, kaggle, KAGGLE_USERNAME="me", KAGGLE_KEY="k")
    assert "already holds files" in one_error_line(again)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        ".gitignore",
        "dog-breed-identification",
        "dog-breed-identification.dvc",
    ]


def test_outside_a_dvc_project_the_folder_stays_and_the_fix_is_named(tmp_path, kaggle):
    done = get_competition(tmp_path, kaggle, KAGGLE_USERNAME="me", KAGGLE_KEY="k")
    assert "`dvc add data/dog-breed-identification` failed" in one_error_line(done)
    assert (tmp_path / "data" / "dog-breed-identification" / "labels.csv").is_file()


def test_missing_credentials_say_where_kaggle_json_goes(tmp_path, kaggle):
    assert one_error_line(get_competition(tmp_path, kaggle)) == (
        f"error: no Kaggle credentials in {tmp_path / '.kaggle'}: put your API token in "
        "~/.kaggle/kaggle.json (kaggle.com > Settings > API > Create New Token; then chmod 600 "
        "it), or set KAGGLE_USERNAME and KAGGLE_KEY"
    )
    assert not (tmp_path / "data").exists()


def test_a_failed_download_is_one_line_and_leaves_nothing(tmp_path, kaggle):
    done = get_competition(
        tmp_path, kaggle, KAGGLE_USERNAME="me", KAGGLE_KEY="k", KAGGLE_STAND_IN_FAIL="1"
    )
    assert (
        "failed (exit 1): 403 - Forbidden: you must accept this competition's rules"
        in one_error_line(done)
    )
    assert list((tmp_path / "data").iterdir()) == []


def test_a_member_outside_the_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr("../escaped.txt", "no")
    with pytest.raises(UserError, match=r"member '\.\./escaped\.txt' would be written outside"):
        unzip(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out").exists()
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable zip file"):
        unzip(tmp_path / "bad.zip", tmp_path / "out")


def test_download_and_unzip_takes_an_empty_folder(tmp_path, kaggle):
    (tmp_path / "comp").mkdir()
    assert download_and_unzip("x", tmp_path / "comp", kaggle=str(kaggle)) == tmp_path / "comp"
    assert (tmp_path / "comp" / "labels.csv").is_file()
