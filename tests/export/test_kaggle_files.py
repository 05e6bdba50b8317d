"""The bundle's code package, wheels list, metadata and notebook."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from lib.export.kaggle_files import (
    PACKAGE,
    RUNTIME_PACKAGES,
    TRAINING_ONLY_IMPORTS,
    code_files,
    kernel_metadata,
    notebook,
    pinned_wheels,
    write_code,
)
from tests.conftest import REPO


def imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level names a file imports at module level, and inside functions."""
    tree = ast.parse(path.read_text())
    inner = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
    }
    module, lazy = set(), set()
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        (lazy if id(node) in inner else module).update(n.split(".")[0] for n in names)
    return module, lazy


def test_the_package_is_libs_own_inference_code_renamed(tmp_path):
    written = write_code(REPO, tmp_path)
    files = code_files(REPO)
    assert {
        "lib/infer/bundled.py",
        "lib/infer/final.py",
        "lib/infer/inference.py",
        "lib/train/checkpoint.py",
        "lib/infer/submission.py",
    } <= set(files)
    # only inference: no downloader, training loop, DVC or the ensemble stage's scoring
    assert not {
        "lib/acquire/download.py",
        "lib/train/loop.py",
        "lib/infer/members.py",
        "lib/infer/blending.py",
        "lib/prepare/folds.py",
    } & set(files)
    for relative in files:
        copy = tmp_path / PACKAGE / Path(relative).relative_to("lib")
        assert copy in written
        original = (REPO / relative).read_text()
        # the same text but for the package's name in its imports
        assert copy.read_text() == original.replace("from lib.", f"from {PACKAGE}.").replace(
            "from lib import", f"from {PACKAGE} import"
        ).replace("import lib.", f"import {PACKAGE}.")


def test_the_package_imports_nothing_outside_itself_but_kaggles_packages(tmp_path):
    write_code(REPO, tmp_path)
    allowed = set(sys.stdlib_module_names) | set(RUNTIME_PACKAGES) | {PACKAGE}
    for path in (tmp_path / PACKAGE).rglob("*.py"):
        module, lazy = imports(path)
        assert module <= allowed, (path, module - allowed)
        assert lazy <= allowed | set(TRAINING_ONLY_IMPORTS), (path, lazy - allowed)
    # imported for real, from a folder outside the project and without it on the path: what
    # the package loads beyond Kaggle's packages is itself and the standard library
    probe = f"""
import importlib.util, sys
for name in {list(RUNTIME_PACKAGES)!r}:
    __import__(name)
before = set(sys.modules)
import {PACKAGE}.infer.bundled
new = {{m.split(".")[0] for m in set(sys.modules) - before}}
assert importlib.util.find_spec("lib") is None, "the project's lib is importable"
print(sorted(new - set(sys.stdlib_module_names)))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHONPATH": str(tmp_path),
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"['{PACKAGE}']"]


def test_wheels_are_the_pinned_versions():
    pins = dict(
        line.split("==") for line in (REPO / "requirements.txt").read_text().split() if "==" in line
    )
    wheels = dict(spec.split("==") for spec in pinned_wheels())
    assert wheels["timm"] == pins["timm"] and wheels["albumentations"] == pins["albumentations"]


def test_the_kernel_runs_offline_on_the_competition_and_the_dataset():
    meta = kernel_metadata(
        username="jdoe",
        kernel_slug="dog-breed-identification-inference",
        title="dog-breed-identification-inference",
        dataset_slug="dog-breed-identification-models",
        competition="dog-breed-identification",
        gpu=True,
    )
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True
    assert meta["competition_sources"] == ["dog-breed-identification"]
    assert meta["dataset_sources"] == ["jdoe/dog-breed-identification-models"]
    assert meta["code_file"] == "inference.ipynb"
    assert json.loads(json.dumps(meta)) == meta


def test_the_notebook_reads_its_folders_from_the_environment():
    book = notebook(
        dataset_slug="demo-models",
        competition_folder="demo",
        competition_marker="test.json",
        title="demo-inference",
    )
    nbformat.validate(book)
    code = "\n".join(cell.source for cell in book.cells if cell.cell_type == "code")
    assert 'os.environ.get("KAGGLE_INPUT_ROOT", "/kaggle/input")' in code
    assert 'os.environ.get("KAGGLE_WORKING_DIR", "/kaggle/working")' in code
    assert "--no-index" in code and f"from {PACKAGE}.infer.bundled import run_bundle" in code
    compile(code, "inference.ipynb", "exec")
