"""Running a Kaggle bundle's notebook as Kaggle would, for the end-to-end tests: headless
(nbclient), in a folder laid out like Kaggle's (input/<dataset>, input/<competition>,
working/), from a working directory and a Python path without the project, with every
connection off the machine refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
from nbclient import NotebookClient

from lib.export.kaggle_files import PACKAGE

# Loaded by the kernel's interpreter (sitecustomize): no connection leaves the machine; the
# kernel itself talks to nbclient over loopback.
NO_NETWORK = """
import socket
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def _local(address):
    return not isinstance(address, tuple) or address[0] in ("127.0.0.1", "::1", "localhost")
def connect(self, address):
    if not _local(address):
        raise OSError(f"network is off: {address}")
    return _connect(self, address)
def connect_ex(self, address):
    return _connect_ex(self, address) if _local(address) else 101
socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
"""
# Run after the notebook's own cells: where its code came from.
PROBE = f"""
import importlib.util, json, sys
print(json.dumps({{"lib": importlib.util.find_spec("lib") is not None,
                  "package": sys.modules["{PACKAGE}"].__file__, "path": sys.path}}))
"""


def run_notebook(project: Path, kaggle: Path) -> dict:
    """Lay out /kaggle/input (the bundle and the competition) and /kaggle/working under
    `kaggle`, execute the notebook there and return what PROBE printed."""
    inputs, working, guard = kaggle / "input", kaggle / "working", kaggle / "guard"
    shutil.copytree(project / "kaggle" / "dataset", inputs / "demo-models")
    shutil.copytree(project / "data" / "demo", inputs / "demo")
    working.mkdir()
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    book = nbformat.read(project / "kaggle" / "kernel" / "inference.ipynb", as_version=4)
    book.cells.append(nbformat.v4.new_code_cell(PROBE))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env |= {
        "KAGGLE_INPUT_ROOT": str(inputs),
        "KAGGLE_WORKING_DIR": str(working),
        "PYTHONPATH": str(guard),
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }
    client = NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(working)}}
    )
    client.execute(env=env)
    return json.loads(book.cells[-1].outputs[0]["text"].strip().splitlines()[-1])


def assert_same_submission(expected: Path, got: Path, *, tolerance: float = 1e-5) -> None:
    want = pd.read_csv(expected, dtype=str, keep_default_na=False)
    have = pd.read_csv(got, dtype=str, keep_default_na=False)
    assert list(have.columns) == list(want.columns)
    assert have.iloc[:, 0].tolist() == want.iloc[:, 0].tolist()  # ids, spelt and ordered alike
    if list(want.columns) == ["id", "predicted"]:
        assert have["predicted"].tolist() == want["predicted"].tolist()
    else:
        diff = np.abs(
            have.iloc[:, 1:].astype(float).to_numpy() - want.iloc[:, 1:].astype(float).to_numpy()
        )
        assert diff.max() <= tolerance, diff.max()
        assert (
            have.iloc[:, 1:].astype(float).to_numpy().argmax(1)
            == want.iloc[:, 1:].astype(float).to_numpy().argmax(1)
        ).all()
