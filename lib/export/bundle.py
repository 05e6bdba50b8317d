"""A finished run, or a blend of runs, as a Kaggle dataset: the fold checkpoints and everything
inference needs, for an offline notebook to reproduce the submission.

In: the project root (its dvc.lock: the settings the predictions were made with), this run's
predictions and checkpoints, the members of the blend by name (experiments or revisions, read
from the DVC cache at their commit, as the ensemble stage reads them), the ensemble settings
and the competition. Out: in the dataset folder, ``models/<run>/fold<k>/model.pt`` (the
checkpoints as trained: weights, arch, classes, mean/std, image size; no optimizer or resume
state), ``inference.json`` (lib.infer.bundled reads it: per run its folds and TTA; the merge,
the weights (fitted ones for ``auto``), the source and target priors, the clipping, the
classes and their names, the submission format and header, the download's image limits) and
``sample_submission.csv`` when the sample is no file of the competition folder.

A run whose params.yaml no longer matches its dvc.lock (settings changed since its last
`dvc repro`) is refused: the bundle would not make the submission the predictions made.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from dvc.fs import DVCFileSystem
from scmrepo.git import Git

from lib.acquire.competition_files import CompetitionFiles
from lib.acquire.layouts import Competition
from lib.common.errors import UserError
from lib.common.fileio import write_json
from lib.infer.blending import blend_runs
from lib.infer.bundled import CONFIG_NAME, CONFIG_VERSION
from lib.infer.inference import PredictConfig
from lib.infer.members import FOLDER, gather_runs, resolve
from lib.infer.shapes import top_k
from lib.infer.submission import competition_class_names, competition_layout
from lib.infer.weights import fit_run_weights
from lib.train.checkpoint import load_checkpoint

TTA_KEYS = tuple(PredictConfig.dep_keys())  # predict@k's params, as dvc.lock records them
ENSEMBLE_KEYS = (
    "ensemble_merge",
    "ensemble_runs",
    "ensemble_weights",
    "prior_correction",
    "target_prior",
    "clip_low",
    "clip_high",
    "submission_format",
)
DOWNLOAD_KEYS = (
    "download.min_side",
    "download.max_pixels",
    "download.max_side",
    "download.jpeg_quality",
    "download.max_bytes",
)
THIS_RUN = "run"


@dataclass
class RunModels:
    """One run of the blend: its name, where it came from and its settings."""

    name: str  # "run" for this run, else the ensemble_runs entry
    folder: str  # models/<folder>/ in the bundle
    commit: str | None  # None: the workspace
    folds: list[int]
    settings: dict[str, Any]  # TTA keys and batch_size


def lock_params(lock: Mapping, stage: str) -> dict[str, Any]:
    """The params.yaml values a dvc.lock recorded for `stage` (``predict@0``), dotted keys."""
    entry = lock.get("stages", {}).get(stage)
    if entry is None:
        raise UserError(f"dvc.lock has no stage {stage}: run `dvc repro` first")
    return dict(entry.get("params", {}).get("params.yaml", {}))


def check_current(
    params: Mapping[str, Any], lock: Mapping, stage: str, keys: Sequence[str]
) -> None:
    """UserError naming the first key whose params.yaml value differs from the one `stage` last
    ran with (the outputs on disk were made with the locked one)."""
    locked = lock_params(lock, stage)
    for key in keys:
        if key in locked and locked[key] != params[key]:
            raise UserError(
                f"params.yaml: {key} = {params[key]!r}, but {stage} last ran with "
                f"{locked[key]!r}: run `dvc repro` first, so the bundle makes the "
                "submission the predictions made"
            )


def read_lock(root: Path) -> dict:
    path = root / "dvc.lock"
    if not path.is_file():
        raise UserError(f"{path}: not found: run `dvc repro` before bundling")
    return yaml.safe_load(path.read_text())


def this_run(params: Mapping[str, Any], lock: Mapping, *, check_runs: bool) -> RunModels:
    """The workspace's run, checked to be what its last `dvc repro` made."""
    for fold in params["train_folds"]:
        check_current(params, lock, f"predict@{fold}", TTA_KEYS)
    keys = (
        ENSEMBLE_KEYS
        if check_runs
        else tuple(k for k in ENSEMBLE_KEYS if k not in ("ensemble_runs", "ensemble_weights"))
    )
    check_current(params, lock, "ensemble", keys)
    check_current(params, lock, "download", DOWNLOAD_KEYS)
    return RunModels(
        name=THIS_RUN,
        folder=THIS_RUN,
        commit=None,
        folds=list(params["train_folds"]),
        settings={k: params[k] for k in TTA_KEYS} | {"batch_size": params["batch_size"]},
    )


def member_run(entry: str, index: int, *, root: Path, folds: Sequence[int]) -> RunModels:
    """An ensemble_runs entry, resolved as the ensemble resolves it; its TTA as its dvc.lock
    recorded at its commit. A folder of predictions is refused: it holds no models."""
    source = resolve(entry, root=root)
    if source.kind == FOLDER:
        raise UserError(
            f"ensemble_runs: {entry!r} is a folder of predictions, without the "
            "models that made them: name the experiment (or revision) instead, so "
            "its checkpoints come from the DVC cache"
        )
    assert source.commit is not None  # every kind but a folder is a commit
    scm = Git(root)
    try:
        fs = scm.get_fs(source.commit)
        lock = yaml.safe_load(fs.read_text("dvc.lock"))
        params = yaml.safe_load(fs.read_text("params.yaml"))
    except FileNotFoundError:
        raise UserError(
            f"{source.describe()}: no dvc.lock or params.yaml at that commit: did it run?"
        ) from None
    finally:
        scm.close()
    settings = lock_params(lock, f"predict@{folds[0]}")
    missing = [k for k in TTA_KEYS if k not in settings]
    if missing:
        raise UserError(
            f"{source.describe()}: its dvc.lock records no {', '.join(missing)} "
            "for predict: run it again with this version of the pipeline"
        )
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", entry).strip("-.") or "member"
    return RunModels(
        name=entry,
        folder=f"{index}-{safe}",
        commit=source.commit,
        folds=list(folds),
        settings={k: settings[k] for k in TTA_KEYS} | {"batch_size": params.get("batch_size", 64)},
    )


def copy_models(
    run: RunModels, *, root: Path, models_dir: str, into: Path, classes: np.ndarray
) -> list[str]:
    """Each fold's model.pt of `run` into ``into/models/<run.folder>/fold<k>/``, from the
    workspace or from the DVC cache at the run's commit; checked to be a checkpoint of the
    classes its predictions have. Their paths, relative to `into`."""
    written = []
    fs = DVCFileSystem(repo=str(root), rev=run.commit) if run.commit else None
    try:
        for fold in run.folds:
            relative = f"models/{run.folder}/fold{fold}/model.pt"
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = f"{models_dir}/fold{fold}/model.pt"
            if fs is None:
                if not (root / source).is_file():
                    raise UserError(f"{root / source}: not found: run `dvc repro train@{fold}`")
                shutil.copyfile(root / source, target)
            else:
                try:
                    fs.get_file(source, str(target))
                except FileNotFoundError:
                    commit = (run.commit or "")[:7]
                    raise UserError(
                        f"{run.name}: {source} at {commit} is not in the "
                        "local DVC cache: bring it with `dvc exp pull <git-remote> "
                        f"{run.name}` or `dvc fetch --all-commits`"
                    ) from None
            checkpoint = load_checkpoint(target)
            if not np.array_equal(np.array(checkpoint["classes"]), classes):
                raise UserError(
                    f"{run.name}: {source} was trained on other classes than its "
                    "predictions hold: run its train and predict stages again"
                )
            written.append(relative)
    finally:
        if fs is not None:
            fs.close()
    return written


def write_bundle(
    into: Path,
    *,
    root: Path,
    params: Mapping[str, Any],
    entries: Sequence[str],
    competition: Competition,
    files: CompetitionFiles,
    predictions_dir: Path,
    models_dir: str,
    slug: str | None,
) -> dict:
    """The dataset folder's models and inference.json (see the module docstring); the config
    written. `entries`: the runs blended with this one (ensemble_runs, or those named)."""
    lock = read_lock(root)
    check_runs = list(entries) == list(params["ensemble_runs"])
    weights = params["ensemble_weights"] or None
    if weights not in (None, "auto") and len(weights) != 1 + len(entries):
        raise UserError(
            f"ensemble_weights has {len(weights)} weights for {1 + len(entries)} "
            "runs (this one first): set one per run, [] or auto"
        )
    how = params["ensemble_merge"]
    runs, _ = gather_runs(
        predictions_dir, folds=params["train_folds"], entries=entries, root=root, how=how
    )
    if weights == "auto":
        weights = [float(w) for w in fit_run_weights(runs, how=how).weights]
    blend = blend_runs(runs, how=how, weights=weights, target_prior=params["target_prior"])
    classes = runs[0].test.classes
    names = competition_class_names(files.classes_file, competition)
    k = top_k(params["submission_format"], params["metric"])
    layout = competition_layout(
        params["submission_format"],
        competition,
        names=names,
        sample=files.sample_submission,
        extra_labels=[int(c) for c in classes],
        k=k,
    )
    members = [this_run(params, lock, check_runs=check_runs)] + [
        member_run(entry, i, root=root, folds=run.folds)
        for i, (entry, run) in enumerate(zip(entries, runs[1:], strict=True), start=1)
    ]
    sample, sample_in_bundle = sample_entry(files.sample_submission, competition.folder, into)
    config = {
        "version": CONFIG_VERSION,
        "competition": {
            "slug": slug,
            "folder": competition.folder.name,
            "format": competition.format,
            "id_column": params["id_column"],
            "label_column": params["label_column"],
            "label_pattern": params["label_pattern"],
            "test_share": params["test_share"],
            "sample_submission": sample,
            "sample_in_bundle": sample_in_bundle,
        },
        "download": {key.split(".", 1)[1]: params[key] for key in DOWNLOAD_KEYS},
        "submission_format": params["submission_format"],
        "labels_per_row": k,
        "header": layout.header,
        "classes": [int(c) for c in classes],
        "names": {str(k): v for k, v in names.items()} if names else None,
        "ensemble": {
            "merge": how,
            "weights": weights,
            "source_prior": [float(x) for x in blend.source],
            "target_prior": [float(x) for x in blend.target],
            "prior_correction": params["prior_correction"],
            "clip_low": params["clip_low"],
            "clip_high": params["clip_high"],
        },
        "members": [],
    }
    for run in members:
        models = copy_models(run, root=root, models_dir=models_dir, into=into, classes=classes)
        config["members"].append(
            {
                "name": run.name,
                "commit": run.commit,
                "folds": run.folds,
                "models": models,
                **run.settings,
            }
        )
    write_json(into / CONFIG_NAME, config)
    return config


def sample_entry(sample: Path | None, competition_dir: Path, into: Path) -> tuple[str | None, bool]:
    """How the notebook finds the sample submission: its path inside the competition folder
    (Kaggle mounts the competition's own, of the hidden test set when it re-runs), or a copy
    in the bundle when it lives elsewhere."""
    if sample is None:
        return None, False
    resolved, folder = Path(sample).resolve(), competition_dir.resolve()
    if resolved.is_relative_to(folder):
        return resolved.relative_to(folder).as_posix(), False
    shutil.copyfile(sample, into / "sample_submission.csv")
    return "sample_submission.csv", True


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def temp_folder_beside(path: Path) -> Path:
    """An empty folder beside `path`, to build into before it replaces `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
