"""Inference from a Kaggle bundle: what the bundle's notebook runs, offline, on Kaggle or off it.

In: the bundle folder (``inference.json``, written by lib.export.bundle, and the fold
checkpoints it lists), the competition folder as Kaggle mounts it (any layout the download stage
reads: its test images are ``file:`` URLs inside it, or ``test/<id>.<ext>``) and a working
folder. Out: ``submission.csv`` in the working folder, checked as Kaggle would, and its path.

Every step is the pipeline's own code, so the notebook writes the numbers the ensemble stage
writes: the test images are validated (and shrunk, when ``download.max_side`` was set) by the
download's ``prepare_image``; each fold's model predicts through ``prepare_inference`` with the
run's TTA; folds and runs are merged by ``combine`` with the fitted weights; the prior
correction, clipping and fallback rows are ``final_submission``'s; the layout is
``competition_layout``'s and the file is written by ``write_submission``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from lib.acquire.layouts import Competition, read_test_competition
from lib.acquire.resize import ImageLimits, prepare_image
from lib.common.errors import UserError
from lib.common.images import list_test_images
from lib.infer.combine import combine
from lib.infer.final import final_submission
from lib.infer.inference import PredictConfig, prepare_inference
from lib.infer.predictions import Predictions
from lib.infer.submission import competition_layout, write_submission
from lib.train.checkpoint import load_checkpoint, model_from_checkpoint
from lib.train.data import ImageDataset
from lib.train.device import pick_device

log = logging.getLogger(__name__)
CONFIG_NAME = "inference.json"
CONFIG_VERSION = 1
SUBMISSION_NAME = "submission.csv"


def read_config(bundle: Path) -> dict:
    """The bundle's inference.json; UserError when it is missing or of another version."""
    path = Path(bundle) / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{path}: not found; is {bundle} a bundle written by `make kaggle-bundle`?")
    config = json.loads(path.read_text())
    if config.get("version") != CONFIG_VERSION:
        raise UserError(
            f"{path}: version {config.get('version')!r}; this code reads version "
            f"{CONFIG_VERSION}: build the bundle again"
        )
    return config


def file_url_path(url: str, folder: Path) -> Path | None:
    """The file a ``file:`` URL names inside ``folder`` (relative URLs are relative to it), or
    None for another scheme or a path outside it (the download reads only inside it too)."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parts.path))
    resolved = (path if path.is_absolute() else folder / path).resolve()
    return resolved if resolved.is_relative_to(folder.resolve()) else None


def stage_test_images(
    competition: Competition, *, limits: ImageLimits, max_bytes: int, into: Path
) -> tuple[list[Path], list[str]]:
    """Each test image as the download stage stores it (validated, shrunk past max_side), in
    ``into``; the paths and ids in id order. An image that is missing or refused is left out
    (its row gets the prior's fallback, as in the pipeline) and counted in a warning."""
    into.mkdir(parents=True, exist_ok=True)
    refused: dict[str, int] = {}
    for record in competition.records["test"]:
        reason = "no file: URL inside the competition folder"
        for url in record.urls:
            path = file_url_path(url, competition.folder)
            if path is None:
                continue
            if not path.is_file():
                reason = "not_found"
                continue
            if path.stat().st_size > max_bytes:
                reason = "too_large"
                continue
            prepared = prepare_image(path.read_bytes(), limits)
            if prepared.data is None:
                reason = prepared.reason
                continue
            (into / f"{record.image_id}.{prepared.extension}").write_bytes(prepared.data)
            reason = None
            break
        if reason is not None:
            refused[reason] = refused.get(reason, 0) + 1
    if refused:
        log.warning(
            "%d test images left out (their rows get the fallback): %s",
            sum(refused.values()),
            refused,
        )
    return list_test_images(into)


def predict_member(
    member: dict,
    *,
    bundle: Path,
    paths: list[Path],
    ids: list[str],
    merge: str,
    device,
    workers: int | str = "auto",
) -> Predictions:
    """One run's test predictions: each fold's model with the run's TTA, folds merged as the
    ensemble merges them."""
    parts, names = [], []
    for relative in member["models"]:
        model_file = bundle / relative
        checkpoint = load_checkpoint(model_file)
        inference = prepare_inference(
            model_from_checkpoint(checkpoint, model_file),
            checkpoint,
            device=device,
            config=PredictConfig.from_values(member, workers=workers),
        )
        dataset = ImageDataset(
            list(paths), None, inference.transform, decode_size=inference.decoded
        )
        parts.append(
            Predictions(
                probs=inference.probs(dataset, f"{member['name']} {relative}"),
                image_ids=np.array(ids, str),
                classes=np.array(checkpoint["classes"]),
            )
        )
        names.append(f"{member['name']}/{relative}")
    return combine(parts, how=merge, names=names)


def run_bundle(
    bundle: Path,
    competition_dir: Path,
    working_dir: Path,
    *,
    device=None,
    workers: int | str = "auto",
) -> Path:
    """Predict the competition's test images with every model of the bundle and write the
    submission into ``working_dir``; its path."""
    bundle, competition_dir, working_dir = Path(bundle), Path(competition_dir), Path(working_dir)
    config = read_config(bundle)
    comp = config["competition"]
    competition = read_test_competition(
        competition_dir,
        fmt=comp["format"],
        id_column=comp["id_column"],
        label_column=comp["label_column"],
        label_pattern=comp["label_pattern"],
        test_share=comp["test_share"],
    )
    names = {int(k): v for k, v in config["names"].items()} if config["names"] else None
    sample = None
    if comp["sample_submission"]:
        sample = (bundle if comp["sample_in_bundle"] else competition_dir) / comp[
            "sample_submission"
        ]
    layout = competition_layout(
        config["submission_format"],
        competition,
        names=names,
        sample=sample,
        extra_labels=config["classes"],
        k=config["labels_per_row"],
    )
    device = device or pick_device()
    ensemble = config["ensemble"]
    with tempfile.TemporaryDirectory(prefix="test-images-") as tmp:
        download = config["download"]
        paths, ids = stage_test_images(
            competition,
            limits=ImageLimits(
                min_side=download["min_side"],
                max_pixels=download["max_pixels"],
                max_side=download["max_side"],
                quality=download["jpeg_quality"],
            ),
            max_bytes=download["max_bytes"],
            into=Path(tmp),
        )
        if not ids:
            raise UserError(
                f"{competition_dir}: none of its {len(layout.ids)} test images could be read"
            )
        runs = [
            predict_member(
                member,
                bundle=bundle,
                paths=paths,
                ids=ids,
                merge=ensemble["merge"],
                device=device,
                workers=workers,
            )
            for member in config["members"]
        ]
    test = combine(
        runs,
        how=ensemble["merge"],
        weights=ensemble["weights"],
        names=[m["name"] for m in config["members"]],
    )
    final = final_submission(
        test,
        layout=layout,
        source=np.array(ensemble["source_prior"]),
        target=np.array(ensemble["target_prior"]),
        prior_correction=ensemble["prior_correction"],
        low=ensemble["clip_low"],
        high=ensemble["clip_high"],
    )
    working_dir.mkdir(parents=True, exist_ok=True)
    out = working_dir / SUBMISSION_NAME
    write_submission(out, final.frame, layout)
    print(
        f"{out}: {len(final.frame)} rows ({final.filled} from the prior: no readable image), "
        f"{len(config['members'])} runs, {sum(len(m['models']) for m in config['members'])} "
        "models",
        flush=True,
    )
    return out
