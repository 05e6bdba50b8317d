"""The kaggle tool's commands that upload a bundle, and their failures as one line.

In: the kaggle executable, the bundle's dataset and kernel folders, the dataset's id. Out: the
argv of the upload (`datasets create`, or `datasets version` when the dataset exists, folders
zipped) and of `kernels push`; `run_kaggle` runs one and returns its output, or raises a
UserError naming the command, its exit code and the tool's last line; `wait_until_ready`
polls `datasets status` until Kaggle has processed the upload (the notebook cannot attach a
dataset before).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from lib.common.errors import UserError

READY = "ready"
WAIT_S, POLL_S = 600, 10


def run_kaggle(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        lines = output.strip().splitlines()
        raise UserError(
            f"kaggle {' '.join(command[1:3])} failed (exit {done.returncode}): "
            f"{lines[-1] if lines else 'no output'}"
        )
    return output


def dataset_status(kaggle: str, dataset_id: str) -> str | None:
    """What `kaggle datasets status` says (ready, pending, ...), None when it fails (no such
    dataset, or none of yours)."""
    done = subprocess.run(
        [kaggle, "datasets", "status", dataset_id], capture_output=True, text=True
    )
    return (
        done.stdout.strip().splitlines()[-1].strip().lower()
        if done.returncode == 0 and done.stdout.strip()
        else None
    )


def dataset_exists(kaggle: str, dataset_id: str) -> bool:
    return dataset_status(kaggle, dataset_id) is not None


def push_commands(
    kaggle: str, *, dataset: Path, kernel: Path, exists: bool, message: str
) -> tuple[list[str], list[str]]:
    """The upload (a new version when the dataset exists) and the notebook's push."""
    if exists:
        upload = [
            kaggle,
            "datasets",
            "version",
            "-p",
            str(dataset),
            "-m",
            message,
            "--dir-mode",
            "zip",
        ]
    else:
        upload = [kaggle, "datasets", "create", "-p", str(dataset), "--dir-mode", "zip"]
    return upload, [kaggle, "kernels", "push", "-p", str(kernel)]


def wait_until_ready(
    kaggle: str,
    dataset_id: str,
    *,
    sleep: Callable[[float], None],
    wait_s: float = WAIT_S,
    poll_s: float = POLL_S,
) -> None:
    waited = 0.0
    while True:
        status = dataset_status(kaggle, dataset_id)
        if status == READY:
            return
        if waited >= wait_s:
            raise UserError(
                f"dataset {dataset_id} is not ready after {wait_s:.0f} s (status: "
                f"{status}): push the notebook later with `kaggle kernels push -p "
                "kaggle/kernel`"
            )
        sleep(poll_s)
        waited += poll_s
