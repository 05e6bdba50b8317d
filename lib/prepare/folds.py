"""Stratified, duplicate-aware k-fold assignment of the labelled images on disk.

In: the ImageFolder tree written by the download stage (`<split>/<label>/<image_id>.<ext>`),
the content hash of every image, how to use validation.json's images (pooled into the folds, or
a fixed holdout), k and a seed. Images that do not decode are left out (`drop_unreadable`: a
warning names them), so training never meets one; stats leaves out the same ones.
Out: a DataFrame with one row per labelled image, sorted by split and image_id
(``lib.common.ids.id_order``): split, image_id (the id's text, read back as text), label, path
(relative to the images folder), fold (0..k-1, or -1 for the holdout) and group (byte-identical
images share a group); and a summary (per-fold counts and class balance, duplicates found). The
same inputs give the same folds on every run and machine.

Duplicates: each group of identical images is placed as one unit, so copies never sit on both
sides of a split; a group that touches the holdout goes to the holdout whole.
Classes with fewer images than folds: their images go to as many folds as they have images (one
each); the other folds never validate that class. A warning lists them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from lib.common.errors import UserError
from lib.common.ids import ALLOWED as ALLOWED_IDS
from lib.common.ids import id_order, is_id_text
from lib.common.images import decode_problem, list_images
from lib.common.params import Config, choice, param
from lib.common.pools import process_pool, set_up_decode_worker
from lib.common.progress import progress

log = logging.getLogger(__name__)
COLUMNS = ["split", "image_id", "label", "path", "fold", "group"]
HOLDOUT = -1
MAX_NAMED = 20  # unreadable images named one per line; the summary lists them all
VALIDATION_USES = ("pool", "holdout")  # validation.json's images: in the folds, or held out


@dataclass(frozen=True)
class FoldsConfig(Config):
    """The folds stage's config (params.yaml: folds, seed, validation). folds and seed share
    RULES' rules: train_folds is checked against folds, and training reads seed too."""

    folds: int = param()
    seed: int = param()
    validation: str = param(choice(*VALIDATION_USES))


def scan_labelled(images_dir: Path, splits: Sequence[str]) -> pd.DataFrame:
    """One row per image of the labelled `splits` found under `images_dir`."""
    rows = []
    for split in splits:
        for path in list_images(images_dir / split):
            label_dir = path.parent.name
            if not (label_dir.isascii() and label_dir.isdigit() and is_id_text(path.stem)):
                raise UserError(
                    f"{path}: expected <split>/<label>/<image_id>.<ext> with an "
                    f"integer label and an image_id of {ALLOWED_IDS}"
                )
            rows.append((split, path.stem, int(label_dir), path.relative_to(images_dir).as_posix()))
    if not rows:
        where = ", ".join(str(images_dir / s) for s in splits)
        raise UserError(f"no images found in {where}: run the download stage first")
    rows.sort(key=lambda row: (row[0], id_order(row[1])))
    return pd.DataFrame(rows, columns=["split", "image_id", "label", "path"])


def drop_unreadable(
    images: pd.DataFrame,
    *,
    images_dir: Path,
    workers: int = 0,
    known: Sequence[bool] | np.ndarray | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """`images` (scan_labelled's rows) without those whose file does not decode
    (lib.common.images.decode_problem, in a pool of `workers` processes, 0 = one per core), and the
    left-out `path`s. A warning names each (the first MAX_NAMED); none readable is a UserError.
    `known`: per row, whether the file's bytes are known to decode (lib.common.decoded: the
    download decoded them); those are not decoded again."""
    paths = [str(images_dir / path) for path in images["path"]]
    problems: list[str | None] = [None] * len(paths)
    todo = [i for i in range(len(paths)) if known is None or not known[i]]
    if len(todo) < len(paths):
        log.info(
            "%d of %d images known to decode (the download decoded them); decoding %d",
            len(paths) - len(todo),
            len(paths),
            len(todo),
        )
    if todo:
        with process_pool(workers, initializer=set_up_decode_worker) as pool:
            found = pool.imap(decode_problem, [paths[i] for i in todo], chunksize=16)
            for i, problem in zip(
                todo, progress(found, total=len(todo), desc="decode"), strict=True
            ):
                problems[i] = problem
    bad = pd.Series([problem is not None for problem in problems], index=images.index)
    if len(images) and bad.all():
        raise UserError(
            f"none of the {len(images)} labelled images under {images_dir} can be "
            f"decoded, e.g. {paths[0]}: {problems[0]}; run the download stage again"
        )
    named = [(path, problem) for path, problem in zip(paths, problems, strict=True) if problem]
    for path, problem in named[:MAX_NAMED]:
        log.warning("%s: left out of the folds, it does not decode: %s", path, problem)
    if len(named) > MAX_NAMED:
        log.warning(
            "%d more images left out of the folds (every one is listed in the folds "
            "summary, `unreadable`)",
            len(named) - MAX_NAMED,
        )
    return images[~bad].reset_index(drop=True), images.loc[bad, "path"].tolist()


def assign_folds(
    images: pd.DataFrame,
    *,
    folds: int,
    seed: int,
    groups: pd.Series | None = None,
    holdout: pd.Series | None = None,
) -> pd.DataFrame:
    """`images` with `fold` and `group` columns: a seeded stratified k-fold over groups of
    identical images (each image its own group when `groups` is None); rows where `holdout` is
    true, and their whole groups, get fold -1."""
    result = images.copy()
    result["group"] = groups.to_numpy() if groups is not None else range(len(result))
    held = (
        result["group"].isin(result.loc[holdout, "group"])
        if holdout is not None
        else pd.Series(False, index=result.index)
    )
    pool = result[~held]
    # One row per group, labelled with the group's most common label, is what gets stratified.
    units = pool.groupby("group")["label"].agg(lambda s: s.mode().iloc[0])
    counts = units.value_counts()
    if counts.max() < folds:
        raise UserError(
            f"folds = {folds} is more than the images of any class "
            f"(largest class has {counts.max()})"
        )
    small = counts[counts < folds]
    if len(small):
        log.warning(
            "%d classes have fewer images than folds=%d: %s; each of their images "
            "goes to its own fold, and the other folds never validate them",
            len(small),
            folds,
            ", ".join(f"label {k} ({v})" for k, v in small.head(10).items()),
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    unit_fold = pd.Series(-1, index=units.index)
    with warnings.catch_warnings():  # the small-class warning is ours, above
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(units.index, units.to_numpy())):
            unit_fold.iloc[held_out] = fold
    result["fold"] = result["group"].map(unit_fold).fillna(HOLDOUT).astype(int)
    return result[COLUMNS]


def summarize(
    folds_frame: pd.DataFrame, *, test_hashes: Sequence[str] = (), hashes: pd.Series | None = None
) -> dict:
    """Counts and class balance per fold, and the duplicates found."""
    per_fold = {}
    for fold, part in folds_frame.groupby("fold"):
        per_class = part["label"].value_counts()
        name = "holdout" if fold == HOLDOUT else f"fold{fold}"
        per_fold[name] = {
            "images": len(part),
            "classes": int(per_class.size),
            "min_per_class": int(per_class.min()),
            "max_per_class": int(per_class.max()),
        }
    sizes = folds_frame["group"].value_counts()
    duplicated = folds_frame[folds_frame["group"].isin(sizes[sizes > 1].index)]
    conflicts = duplicated.groupby("group")["label"].nunique()
    summary: dict[str, Any] = {
        "images": len(folds_frame),
        "per_fold": per_fold,
        "duplicates": {
            "groups": int((sizes > 1).sum()),
            "images_in_groups": len(duplicated),
            "groups_with_conflicting_labels": int((conflicts > 1).sum()),
        },
    }
    if hashes is not None:
        summary["duplicates"]["shared_with_test"] = int(hashes.isin(set(test_hashes)).sum())
    return summary


def describe(summary: dict) -> str:
    """The summary as a few printable lines."""
    lines = [
        f"{name}: {v['images']} images, {v['classes']} classes, "
        f"{v['min_per_class']}-{v['max_per_class']} per class"
        for name, v in summary["per_fold"].items()
    ]
    d = summary["duplicates"]
    lines.append(
        f"duplicates: {d['groups']} groups of identical images ({d['images_in_groups']} "
        f"images, {d['groups_with_conflicting_labels']} with conflicting labels), "
        f"{d.get('shared_with_test', 0)} labelled images also in test"
    )
    return "\n".join(lines)


def read_folds(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path} not found: run the folds stage first")
    # ids stay text: "007" and "NA" are ids, not 7 and a missing value
    frame = pd.read_csv(
        path, dtype={"split": str, "image_id": str, "path": str}, keep_default_na=False
    )
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise UserError(f"{path}: missing columns {sorted(missing)}")
    return frame


def split_fold(frame: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows) for `fold`; holdout rows are in neither."""
    if fold not in set(frame["fold"]):
        raise UserError(
            f"fold {fold} is not in folds.csv (folds there: "
            f"{sorted(set(frame['fold']) - {HOLDOUT})}): train only folds that "
            "`folds` makes (train_folds below folds), or raise folds and run "
            "`dvc repro folds`"
        )
    held_out = frame["fold"] == fold
    training = (frame["fold"] != fold) & (frame["fold"] != HOLDOUT)
    return frame[training].reset_index(drop=True), frame[held_out].reset_index(drop=True)


def holdout_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["fold"] == HOLDOUT].reset_index(drop=True)
