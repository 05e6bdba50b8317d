"""Talk to Kaggle through its official command-line tool (`kaggle`, pinned in
requirements.txt): find it, check that credentials are there before it is called, and describe
a run in the message a submission carries.

In: the environment (PATH, HOME, KAGGLE_* variables), the run's params and headline metrics,
the git repository. Out: the `kaggle` argv to run, a one-line UserError when it cannot run,
and the submission message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from lib.common.errors import UserError

CREDENTIALS_HELP = (
    "put your API token in ~/.kaggle/kaggle.json (kaggle.com > Settings > API "
    "> Create New Token; then chmod 600 it), or set KAGGLE_USERNAME and "
    "KAGGLE_KEY"
)


def kaggle_executable() -> str:
    found = shutil.which("kaggle")
    if found is None:
        raise UserError(
            "the kaggle command is not installed: run `make setup` (it is pinned in "
            "requirements.txt)"
        )
    return found


def check_credentials(environ: dict[str, str] | None = None) -> None:
    """The places the kaggle tool reads a token from; none present -> where kaggle.json goes."""
    env = os.environ if environ is None else environ
    if (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")) or env.get("KAGGLE_API_TOKEN"):
        return
    folder = (
        Path(env["KAGGLE_CONFIG_DIR"])
        if env.get("KAGGLE_CONFIG_DIR")
        else Path(env.get("HOME", "~")).expanduser() / ".kaggle"
    )
    if any((folder / name).is_file() for name in ("kaggle.json", "access_token")):
        return
    raise UserError(f"no Kaggle credentials in {folder}: {CREDENTIALS_HELP}")


def require_slug(slug: str | None) -> str:
    if not slug:
        raise UserError(
            "kaggle_competition is null in params.yaml: set it to the competition's "
            "slug, the last part of its URL (e.g. kaggle_competition: "
            "dog-breed-identification)"
        )
    return slug


def experiment_name(repo: Path, metrics_file: Path) -> str:
    """The DVC experiment whose committed headline metrics (`metrics_file`, relative to `repo`)
    equal the workspace's (the run the workspace holds after `dvc exp run` or `dvc exp apply`),
    else `workspace@<commit>`."""
    path = repo / metrics_file
    current = _json_or_none(path.read_text()) if path.is_file() else None
    refs = _git(
        repo, "for-each-ref", "--sort=-committerdate", "--format=%(refname)", "refs/exps"
    ).split()
    for ref in refs:
        if (
            ref.count("/") >= 4
            and current is not None
            and _json_or_none(_git(repo, "show", f"{ref}:{metrics_file.as_posix()}")) == current
        ):
            return ref.rsplit("/", 1)[1]
    head = _git(repo, "rev-parse", "--short", "HEAD").strip()
    return f"workspace@{head}" if head else "workspace"


def submission_message(*, name: str, params: dict, headline: dict) -> str:
    """One line: which run this is and how it scored out of fold."""
    folds = len(params["train_folds"])
    parts = [
        name,
        params["arch"],
        f"{params['img_size']}px",
        f"{folds} fold{'s' if folds > 1 else ''}",
        f"tta {params['tta']}",
    ]
    if params.get("ensemble_runs"):
        parts.append(f"+{len(params['ensemble_runs'])} runs")
    oof = headline.get("oof", {})
    metric = params.get("metric", "accuracy")
    if metric in oof and metric not in ("accuracy", "log_loss"):
        parts.append(f"OOF {metric} {oof[metric]:.4f}")  # the competition's metric first
    if "accuracy" in oof:
        parts.append(f"OOF acc {oof['accuracy']:.4f}")
    if "log_loss" in oof:
        parts.append(f"OOF logloss {oof['log_loss']:.4f}")
    return " | ".join(parts)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None
