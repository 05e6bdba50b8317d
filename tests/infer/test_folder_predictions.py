"""lib.infer.folder_predictions and `python -m commands.predict_folder`: tiny real fold models on
a folder of new images, no DVC."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
import yaml

from commands.predict_folder import build_parser
from lib.common.errors import UserError
from lib.infer.folder_predictions import fold_models, folder_images, top_k_table
from lib.infer.predictions import Predictions
from lib.train.checkpoint import save_checkpoint
from lib.train.model import create_model
from tests.conftest import REPO, write_image
from tests.helpers import repo_params

CLASSES = [4, 7, 9]


def bomb_png(side: int = 30_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def save_fold_model(path, seed: int) -> None:
    torch.manual_seed(seed)
    model = create_model("resnet10t", num_classes=len(CLASSES), pretrained="none")
    save_checkpoint(
        path,
        model=model,
        arch="resnet10t",
        classes=CLASSES,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        img_size=16,
        params={},
    )


def test_predict_folder_writes_ids_classes_and_top_k(tmp_path):
    for fold in (0, 1):
        save_fold_model(tmp_path / "models" / f"fold{fold}" / "model.pt", seed=fold)
    for i, name in enumerate(("000bec18.jpg", "b.png", "sub/IMG-3.jpg")):
        write_image(tmp_path / "new" / name, size=(20, 18), seed=i)
    # what a careless folder holds: skipped and named, the rest predicted
    (tmp_path / "new" / "notes.jpg").write_text("not an image")
    (tmp_path / "new" / "empty.png").write_bytes(b"")
    (tmp_path / "new" / "bomb.png").write_bytes(bomb_png())
    (tmp_path / "out").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "classes.csv").write_text("label_id,name\n4,cat\n7,dog\n9,fox\n")
    competition = tmp_path / "comp"
    (competition / "train").mkdir(parents=True)
    params = repo_params() | {
        "competition": str(competition),
        "tta": "flip",
        "workers": 0,
        "ensemble_merge": "geomean",
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run(
        [sys.executable, "-m", "commands.predict_folder", "new", "--out", "out", "--top-k", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "out/new.csv: 3 images, 2 models merged by geomean, tta flip" in done.stdout
    for name in ("notes.jpg", "empty.png", "bomb.png"):
        assert f"new/{name}: skipped, it does not decode as an image" in done.stderr
    assert "Traceback" not in done.stderr
    with open(tmp_path / "out" / "new.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "predicted", "label_1", "prob_1", "label_2", "prob_2"]
    assert [row["id"] for row in rows] == ["000bec18", "IMG-3", "b"]  # in id order
    for row in rows:
        assert row["predicted"] == row["label_1"] and {row["label_1"], row["label_2"]} <= {
            "cat",
            "dog",
            "fox",
        }
        assert 1 >= float(row["prob_1"]) >= float(row["prob_2"]) > 0

    # without --out: under outputs/, which git ignores (no clutter in `git status`)
    done = subprocess.run(
        [sys.executable, "-m", "commands.predict_folder", "new"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "outputs" / "new.csv").read_text().startswith("id,predicted,label_1,")


def test_predict_folder_help_explains_every_option():
    parser = build_parser()
    assert parser.description.endswith("no DVC needed.")
    assert all(action.help for action in parser._actions), [
        action.dest for action in parser._actions if not action.help
    ]


@pytest.mark.parametrize("path", ["outputs/new.csv", "dvc_plots/index.html"])
def test_what_commands_write_for_the_user_is_git_ignored(path):
    done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    assert done.returncode == 0, f"{path} is not git-ignored"


def test_top_k_table_names_classes_or_shows_label_ids():
    predictions = Predictions(
        np.array([[0.2, 0.5, 0.3]], np.float32), np.array(["x"]), np.array(CLASSES)
    )
    named = top_k_table(predictions, {4: "cat", 7: "dog", 9: "fox"}, k=5)
    assert named.iloc[0].tolist() == [
        "x",
        "dog",
        "dog",
        pytest.approx(0.5),
        "fox",
        pytest.approx(0.3),
        "cat",
        pytest.approx(0.2),
    ]
    assert top_k_table(predictions, None, k=1).iloc[0].tolist()[:3] == ["x", "7", "7"]


def test_no_models_or_no_images_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"no fold<k>/model\.pt under .*models: train"):
        fold_models([tmp_path / "models"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: no image files in it"):
        folder_images(tmp_path / "empty")
    write_image(tmp_path / "two" / "a.jpg")
    write_image(tmp_path / "two" / "a.png")
    with pytest.raises(UserError, match=r"a\.png: its id 'a' \(the file stem\) is taken by"):
        folder_images(tmp_path / "two")
