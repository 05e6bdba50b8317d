"""lib.train.checkpoint: checkpoints with their provenance; damaged or foreign files as one line."""

import re

import numpy as np
import pytest
import torch

from lib.common.errors import UserError
from lib.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from lib.train.model import create_model


def test_checkpoint_carries_provenance_and_reloads_the_same_model(tmp_path):
    model = create_model("resnet10t", num_classes=3, pretrained="none").eval()
    path = tmp_path / "model.pt"
    save_checkpoint(
        path,
        model=model,
        arch="resnet10t",
        classes=[4, 7, 9],
        mean=[0.1] * 3,
        std=[0.2] * 3,
        img_size=32,
        params={"lr": 0.1, "arch": "resnet10t"},
    )
    checkpoint = load_checkpoint(path)  # weights_only=True inside
    assert checkpoint["classes"] == [4, 7, 9] and checkpoint["img_size"] == 32
    assert checkpoint["params"]["lr"] == 0.1
    x = torch.randn(2, 3, 32, 32)
    reloaded = model_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), reloaded(x))


def saved_checkpoint(path, arch="resnet10t"):
    model = create_model(arch, num_classes=3, pretrained="none")
    save_checkpoint(
        path,
        model=model,
        arch=arch,
        classes=[4, 7, 9],
        mean=[0.1] * 3,
        std=[0.2] * 3,
        img_size=32,
        params={},
    )
    return path


@pytest.mark.parametrize("damage", ["empty", "truncated", "text", "random bytes"])
def test_a_damaged_checkpoint_is_one_line_naming_it_and_the_fix(tmp_path, damage):
    path = saved_checkpoint(tmp_path / "model.pt")
    whole = path.read_bytes()
    path.write_bytes(
        {
            "empty": b"",
            "truncated": whole[: len(whole) // 2],
            "text": b"version https://git-lfs.github.com/spec/v1\n",
            "random bytes": np.random.default_rng(0).bytes(5000),
        }[damage]
    )
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert (
        message.startswith(
            f"{path}: not a readable torch file (truncated, empty or another format: "
        )
        and "\n" not in message
    )
    assert message.endswith(f"`dvc checkout {path}` restores it, or `dvc repro` trains it again")


@pytest.mark.parametrize(
    ("content", "lacks"),
    [
        ({"conv.weight": torch.zeros(2)}, "state_dict, arch, classes, mean, std, img_size, params"),
        ([torch.zeros(2)], "state_dict, arch, classes, mean, std, img_size, params"),
        (
            {
                "state_dict": {"w": 3},
                "arch": "resnet10t",
                "classes": [1],
                "mean": [],
                "std": [],
                "img_size": 32,
                "params": {},
            },
            "weights",
        ),
    ],
)
def test_a_foreign_torch_file_is_not_taken_for_a_checkpoint(tmp_path, content, lacks):
    torch.save(content, tmp_path / "model.pt")
    with pytest.raises(
        UserError, match=re.escape(f"not a checkpoint of this pipeline (it lacks {lacks})")
    ):
        load_checkpoint(tmp_path / "model.pt")


def test_weights_that_do_not_fit_the_checkpoints_arch_are_named(tmp_path):
    checkpoint = load_checkpoint(saved_checkpoint(tmp_path / "model.pt"))
    checkpoint["classes"] = [1, 2]  # a 3-class head for 2 classes
    with pytest.raises(
        UserError,
        match=r"model.pt: its weights do not fit resnet10t with 2 "
        r"classes \(2 misfits, e.g. fc.bias\)",
    ):
        model_from_checkpoint(checkpoint, tmp_path / "model.pt")


def test_a_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="model.pt: not found; `dvc checkout"):
        load_checkpoint(tmp_path / "model.pt")
