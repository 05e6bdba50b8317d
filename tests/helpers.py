"""Helpers the test modules share (fixtures are in conftest.py).

- ``call_stage`` / ``call_command``: a stage (``stages.<name>``) or a command
  (``commands.<name>``) run in this process as ``python -m`` would run it, its exit code,
  stdout and stderr (its log lines included) in a CompletedProcess: an error-message test pays
  no interpreter start and no torch import.
- ``run_stage`` / ``run_command``: the same in a fresh ``python -m`` process, for what only a
  process shows (signals, environment variables read at import, a crash's exit status).
- ``one_error_line``: the check every user-mistake test makes: exit 2, no traceback, one
  ``error:`` line, which it returns.
- ``run`` and ``wait_for_queue``: real ``git`` and ``dvc`` commands for the end-to-end tests
  (marked slow: ``make test-fast`` leaves them out).
- ``make_project``, ``copy_project``, ``commit``, ``ran_stages``: the end-to-end tests' projects
  (a copy of the repo with a shrunk demo, its own git repo) and what ``dvc`` ran in them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import yaml

from tests.conftest import REPO

# what a stage's log lines look like (stages.common.run configures the same)
_LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def repo_params() -> dict:
    """The default params (tests/params.yaml: never the checkout's params.yaml), for a project
    in a temporary folder: the competition is the repo's demo."""
    from tests.conftest import default_params

    return default_params() | {"competition": str(REPO / "data" / "demo")}


def call_stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m stages.<name> *args`` in ``cwd``, run in this process (``call_module``)."""
    return call_module(f"stages.{name}", cwd, *args)


def call_command(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m commands.<name> *args`` in ``cwd``, run in this process (``call_module``)."""
    return call_module(f"commands.{name}", cwd, *args)


def call_module(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m <module> *args`` in ``cwd``, run in this process. A UserError ends as the
    module's own exit 2 and ``error:`` line; any other exception as a traceback on stderr and
    exit code 1, as the interpreter would end it."""
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, "%H:%M:%S"))
    root = logging.getLogger()
    level, argv, folder = root.level, sys.argv, os.getcwd()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = [str(REPO.joinpath(*module.split(".")).with_suffix(".py")), *args]
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            # runpy's note that the module was imported before: that is this helper's point
            warnings.filterwarnings("ignore", r".* found in sys\.modules", RuntimeWarning)
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=False)
            except SystemExit as exit_:
                code = _exit_code(exit_.code, err)
            except Exception:  # noqa: BLE001 - reported as the interpreter would report it
                traceback.print_exc(file=err)
                code = 1
    finally:
        os.chdir(folder)
        sys.argv = argv
        root.removeHandler(handler)
        root.setLevel(level)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def _exit_code(code: object, err: io.StringIO) -> int:
    """What the interpreter makes of ``sys.exit(code)``: a message is printed, exit 1."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=err)
    return 1


def run_stage(
    name: str, cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m stages.<name> *args`` in ``cwd``, in a new process (``run_module``)."""
    return run_module(f"stages.{name}", cwd, *args, env=env, timeout=timeout)


def run_command(
    name: str, cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m commands.<name> *args`` in ``cwd``, in a new process (``run_module``)."""
    return run_module(f"commands.{name}", cwd, *args, env=env, timeout=timeout)


def run_module(
    module: str, cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m <module> *args`` in ``cwd``, in a new process (``env`` added to this one's
    environment)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The stage's error line, after checking it failed as a user's mistake: exit 2, no
    traceback, one line."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """A real command (``git``, ``dvc``) in ``cwd`` with this venv first on PATH (the stage
    commands call ``python``), a git identity and ``env``; its stdout and stderr, once it
    succeeded."""
    full_env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
        **(env or {}),
    }
    done = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def wait_for_queue(project: Path, timeout_s: float = 1200, poll_s: float = 3) -> str:
    """`dvc queue status` once nothing is queued or running."""
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project)
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        time.sleep(poll_s)
    raise AssertionError(f"the queue did not finish in {timeout_s} s:\n{status}")


SHRUNK = {
    "img_size": 32,
    "epochs": 1,
    "folds": 2,
    "train_folds": [0, 1],
    "batch_size": 32,
    "workers": 0,
}
KEEP = {"train": 160, "validation": 40, "test": 60}  # first N image ids per split


def shrink_competition(demo: Path) -> None:
    """Keep the first ids of each split, plus every entry with a broken mirror."""
    for split, keep in KEEP.items():
        path = demo / f"{split}.json"
        doc = json.loads(path.read_text())
        ids = {e["image_id"] for e in doc["images"] if e["image_id"] <= keep or len(e["url"]) > 1}
        doc["images"] = [e for e in doc["images"] if e["image_id"] in ids]
        if "annotations" in doc:
            doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
        path.write_text(json.dumps(doc))
    with open(demo / "test_labels.csv") as f:
        rows = [r for r in csv.DictReader(f) if int(r["id"]) in ids]
    with open(demo / "test_labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "label"])
        writer.writeheader()
        writer.writerows(rows)


def make_project(root: Path, shrunk: dict | None = None, source: Path = REPO) -> Path:
    """A copy of the repo's tracked and untracked files (or of every file under `source`) in
    `root`, with the demo competition and the params shrunk (`shrunk` overrides SHRUNK),
    committed as a fresh git repo."""
    if source == REPO:
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    else:
        files = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    for name in files:
        if (source / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, root / name)
    shrink_competition(root / "data" / "demo")
    from tests.conftest import default_params

    params = default_params()  # the defaults, not the checkout's params.yaml
    params.update(SHRUNK | (shrunk or {}))
    params["stats"]["workers"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "start"], root)
    return root


def copy_project(project: Path, root: Path) -> Path:
    """`project` (its git repo, DVC cache and outs) copied into `root`, for a test to change
    without touching the original: cheaper than reproducing it again."""
    shutil.copytree(project, root, symlinks=True, dirs_exist_ok=True)
    return root


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", message], project)


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))
