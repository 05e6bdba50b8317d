"""Stage entry points: a user's mistake ends as one line on stderr and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO


def run_stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_bad_param_is_one_line_naming_key_value_and_allowed(tmp_path):
    params = repo_params() | {"folds": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage("folds", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: params.yaml: folds = 1 is not allowed: expected an integer >= 2"]


def test_bad_image_id_in_competition_is_one_line_before_any_download(tmp_path):
    competition = tmp_path / "comp"
    competition.mkdir()
    (competition / "train.json").write_text(json.dumps({
        "images": [{"url": ["file:a.png"], "image_id": "../x"}],
        "annotations": [{"image_id": "../x", "label_id": 1}]}))
    params = repo_params() | {"competition": str(competition)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage("download", tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "image_id" in lines[-1] and "../x" in lines[-1]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "images").exists()


def test_missing_upstream_out_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params()))
    done = run_stage("train", tmp_path, "--fold", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: data/folds.csv not found: run the folds stage first")
