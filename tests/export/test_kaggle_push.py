"""`make kaggle-push` against a stand-in `kaggle` on PATH that records every call and answers as
the real tool does: `datasets status` fails for a dataset that does not exist yet."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.common.errors import UserError
from lib.export.kaggle_push import push_commands, wait_until_ready
from tests.conftest import REPO

STAND_IN = """#!/bin/sh
printf '%s\\n' "$*" >> {state}/calls.txt
if [ -n "$FAIL_ON" ] && [ "$1 $2" = "$FAIL_ON" ]; then
  echo 'uploading...'; echo '403 - Forbidden - Permission denied' >&2; exit 1
fi
case "$1 $2" in
  "datasets status") if [ -f {state}/exists ]; then echo ready; exit 0; fi
                     echo '404 - Not Found' >&2; exit 1 ;;
  "datasets create") touch {state}/exists; echo 'Dataset is being created' ;;
  "datasets version") echo 'Dataset version is being created' ;;
  "kernels push") echo 'Kernel version 1 successfully pushed.' ;;
esac
"""


def stand_in(folder: Path) -> Path:
    folder.mkdir(parents=True)
    script = folder / "kaggle"
    script.write_text(STAND_IN.format(state=folder))
    script.chmod(0o755)
    return folder


def bundle(out: Path) -> Path:
    (out / "dataset").mkdir(parents=True)
    (out / "kernel").mkdir()
    (out / "dataset" / "dataset-metadata.json").write_text(json.dumps({"id": "jdoe/demo-models"}))
    (out / "kernel" / "kernel-metadata.json").write_text(json.dumps({"id": "jdoe/demo-inference"}))
    return out


def push(tmp_path: Path, bin_dir: Path, *args: str, **env: str):
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KAGGLE_USERNAME": "jdoe",
        "KAGGLE_KEY": "k",
    }
    return subprocess.run(
        [sys.executable, "-m", "commands.kaggle_push", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_new_dataset_is_created_then_the_notebook_pushed(tmp_path):
    bin_dir, out = stand_in(tmp_path / "bin"), bundle(tmp_path / "kaggle")
    done = push(tmp_path, bin_dir)
    assert done.returncode == 0, done.stderr
    assert (bin_dir / "calls.txt").read_text().splitlines() == [
        "datasets status jdoe/demo-models",
        f"datasets create -p {Path('kaggle') / 'dataset'} --dir-mode zip",
        "datasets status jdoe/demo-models",
        f"kernels push -p {Path('kaggle') / 'kernel'}",
    ]
    assert done.stdout.strip().endswith("Kernel version 1 successfully pushed.")
    assert out.is_dir()


def test_an_existing_dataset_gets_a_new_version(tmp_path):
    bin_dir = stand_in(tmp_path / "bin")
    bundle(tmp_path / "b")
    (bin_dir / "exists").touch()
    done = push(tmp_path, bin_dir, "--out", "b", "--message", "fold 3 added")
    assert done.returncode == 0, done.stderr
    calls = (bin_dir / "calls.txt").read_text().splitlines()
    assert calls[1] == f"datasets version -p {Path('b') / 'dataset'} -m fold 3 added --dir-mode zip"
    assert calls[-1] == f"kernels push -p {Path('b') / 'kernel'}"


def test_a_failing_upload_is_one_line_and_nothing_is_pushed(tmp_path):
    bin_dir = stand_in(tmp_path / "bin")
    bundle(tmp_path / "kaggle")
    done = push(tmp_path, bin_dir, FAIL_ON="datasets create")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: kaggle datasets create failed (exit 1): 403 - Forbidden - Permission denied"
    )
    assert "kernels push" not in (bin_dir / "calls.txt").read_text()


def test_without_a_bundle_it_says_what_to_run(tmp_path):
    done = push(tmp_path, stand_in(tmp_path / "bin"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {Path('kaggle/dataset/dataset-metadata.json')}: not "
        "found: run `make kaggle-bundle` first"
    )


def test_waiting_for_kaggle_to_process_the_dataset_gives_up_with_the_command(tmp_path):
    bin_dir = stand_in(tmp_path / "bin")
    slept = []
    with pytest.raises(UserError, match="not ready after 30 s .*kaggle kernels push"):
        wait_until_ready(
            str(bin_dir / "kaggle"), "jdoe/x", sleep=slept.append, wait_s=30, poll_s=10
        )
    assert slept == [10, 10, 10]


def test_the_commands():
    upload, kernel = push_commands(
        "kaggle", dataset=Path("d"), kernel=Path("k"), exists=False, message="m"
    )
    assert upload == ["kaggle", "datasets", "create", "-p", "d", "--dir-mode", "zip"]
    assert kernel == ["kaggle", "kernels", "push", "-p", "k"]
