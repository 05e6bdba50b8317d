"""DDP on the CPU: `python -m stages.launch stages.train` with gpus: 2 starts two gloo processes
under torchrun; they train on halves of every batch and end within float tolerance of one
process with the same global batch. Only rank 0 writes the outs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from lib.common.errors import UserError
from lib.train import distributed
from tests.conftest import REPO
from tests.train.test_resume import make_project

# A model without batch norm (ConvNeXt: layer norm), no dropout, augmentation or mixing: then
# the only randomness is the sampler's, which is shared by the processes
# (lib.train.data.EpochSampler).
DDP_PARAMS = {
    "arch": "convnext_atto",
    "head": "default",
    "pretrained": "none",
    "dropout": 0.0,
    "aug": "none",
    "mixup": 0.0,
    "cutmix": 0.0,
    "ema": 0.0,
    "epochs": 2,
    "batch_size": 12,
    "img_size": 32,
    "workers": 0,
}


def test_torchrun_command_and_a_process_count_mismatch(monkeypatch):
    command = distributed.torchrun_command(2, "stages.train", ["--fold", "0"])
    assert command[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "stages.train",
        "--fold",
        "0",
    ]
    assert distributed.setup(1)[0] == distributed.Dist()  # no torchrun: one plain process
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="gpus = 1 but this process is one of 2"):
        distributed.setup(1)


def train(root, gpus: int) -> str:
    params = yaml.safe_load((root / "params.yaml").read_text()) | DDP_PARAMS | {"gpus": gpus}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "stages.launch", "stages.train", "--fold", "0"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_of_the_same_global_batch(tmp_path):
    runs = {}
    for gpus in (1, 2):
        root = make_project(tmp_path / f"gpus{gpus}")
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "init", "-q"], cwd=root, check=True)  # DVCLive wants a repo
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], cwd=root, check=True)
        output = train(root, gpus)
        checkpoint = torch.load(root / "models/fold0/model.pt", weights_only=True)
        metrics = json.loads((root / "models/fold0/live/metrics.json").read_text())
        runs[gpus] = checkpoint["state_dict"], metrics, output
    (one, one_metrics, _), (two, two_metrics, output) = runs[1], runs[2]
    assert "2 CPU processes with gloo" in output
    assert output.count("resuming") == 0 and output.count("val_loss") == 1  # rank 0 logs only
    assert two_metrics["step"] == one_metrics["step"] == DDP_PARAMS["epochs"] - 1  # logged once
    for name in ("train_loss", "val_loss", "val_acc"):
        assert two_metrics[name] == pytest.approx(one_metrics[name], abs=1e-4), name
    assert set(one) == set(two)
    assert max((one[k].float() - two[k].float()).abs().max().item() for k in one) < 1e-4
