"""lib.train.fold: a fold's loaders from the folds table, its resume key, one fold trained and
saved with its provenance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from lib.common.errors import UserError
from lib.prepare.folds import COLUMNS, HOLDOUT
from lib.train.checkpoint import load_checkpoint
from lib.train.distributed import Dist
from lib.train.fold import fold_data, resume_key, train_fold
from lib.train.loop import TrainConfig
from tests.conftest import PARAMS_FIXTURE, REPO, train_config

STATS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def folds_table(image_tree: Path) -> pd.DataFrame:
    """The fixture's 18 training images: labels 1 and 2 in folds 0 and 1, label 3 held out
    but for one image per fold."""
    rows = []
    for path in sorted((image_tree / "train").rglob("*.png")):
        label, image_id = int(path.parent.name), int(path.stem)
        fold = HOLDOUT if label == 3 and image_id % 100 > 1 else image_id % 2
        rows.append(
            ["train", str(image_id), label, path.relative_to(image_tree).as_posix(), fold, image_id]
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def config(**overrides) -> TrainConfig:
    """params.yaml's values at a size that trains in seconds on a CPU."""
    small = dict(
        arch="resnet10t",
        pretrained="none",
        img_size=16,
        batch_size=4,
        workers=0,
        epochs=1,
        aug="none",
    )
    return train_config(**small | overrides)


def test_fold_data_trains_on_the_other_folds_and_validates_on_this_one(image_tree):
    folds = folds_table(image_tree)
    data = fold_data(folds, 1, images_dir=image_tree, stats=STATS, config=config(), env=Dist())
    assert data.classes == [1, 2, 3]  # every label of the table, the held-out ones too
    train_paths = {Path(p).relative_to(image_tree).as_posix() for p in data.train.dataset.paths}
    val_paths = {Path(p).relative_to(image_tree).as_posix() for p in data.val.dataset.paths}
    assert train_paths == set(folds.loc[folds["fold"] == 0, "path"])
    assert val_paths == set(folds.loc[folds["fold"] == 1, "path"])
    assert data.train.batch_size == 4 and data.loss_weights is None
    image, target = data.val.dataset[0]
    assert tuple(image.shape) == (3, 16, 16) and 0 <= target < 3


def test_each_process_loads_its_share_of_a_batch_that_must_divide(image_tree):
    folds = folds_table(image_tree)
    data = fold_data(
        folds,
        0,
        images_dir=image_tree,
        stats=STATS,
        config=config(batch_size=8),
        env=Dist(rank=1, world=2),
    )
    assert data.train.batch_size == 4
    with pytest.raises(
        UserError,
        match=r"batch_size = 6 is not allowed with gpus = 4: expected "
        r"a multiple of gpus",
    ):
        fold_data(
            folds,
            0,
            images_dir=image_tree,
            stats=STATS,
            config=config(batch_size=6),
            env=Dist(world=4),
        )


def test_loss_weights_are_inverse_class_frequencies_of_the_training_rows(image_tree):
    folds = folds_table(image_tree)
    data = fold_data(
        folds,
        0,
        images_dir=image_tree,
        stats=STATS,
        config=config(class_balance="loss_weights"),
        env=Dist(),
    )
    counts = folds.loc[folds["fold"] == 1, "label"].value_counts().sort_index()
    weights = data.loss_weights.numpy()
    assert counts.tolist() == [3, 3, 1] and weights[2] > weights[0] == pytest.approx(weights[1])
    assert weights[2] / weights[0] == pytest.approx(3)


def test_the_resume_key_changes_with_params_folds_or_stats_only():
    key = resume_key({"lr": 0.1, "seed": 0}, folds_text="a", stats_text="b")
    assert key == resume_key({"seed": 0, "lr": 0.1}, folds_text="a", stats_text="b")
    assert (
        len(
            {
                key,
                resume_key({"lr": 0.2, "seed": 0}, folds_text="a", stats_text="b"),
                resume_key({"lr": 0.1, "seed": 0}, folds_text="a2", stats_text="b"),
                resume_key({"lr": 0.1, "seed": 0}, folds_text="a", stats_text="b2"),
            }
        )
        == 4
    )


def test_train_fold_saves_the_model_with_its_provenance_and_drops_the_resume_file(
    image_tree, tmp_path
):
    small = config()
    data = fold_data(
        folds_table(image_tree), 0, images_dir=image_tree, stats=STATS, config=small, env=Dist()
    )
    resume = tmp_path / "resume.pt"
    resume.write_bytes(b"a stale resume file of other params")
    epochs = []
    train_fold(
        data,
        fold=0,
        config=small,
        provenance={"lr": small.lr},
        stats=STATS,
        key="k",
        model_path=tmp_path / "model.pt",
        resume_path=resume,
        device=torch.device("cpu"),
        env=Dist(),
        on_epoch=epochs.append,
    )
    saved = load_checkpoint(tmp_path / "model.pt")
    assert (saved["arch"], saved["classes"], saved["img_size"]) == ("resnet10t", [1, 2, 3], 16)
    assert saved["params"] == {"lr": small.lr, "kept_epoch": 1}
    assert saved["mean"] == STATS["mean"] and len(epochs) == 1
    assert not resume.exists()


def test_the_provenance_is_the_value_of_each_dvc_param_of_train():
    """What model.pt records and the resume key hashes: train@k's params in dvc.yaml, each with
    its value in the params file, no speed knob among them."""
    import yaml

    from lib.common.params import read_params_file

    params = read_params_file(PARAMS_FIXTURE)
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["do"]["params"]
    flat = {key: params[key] for key in declared}  # training's keys are all top-level
    provenance = TrainConfig.from_params(params).dep_values()
    assert provenance == flat
    assert resume_key(provenance, folds_text="", stats_text="") == resume_key(
        flat, folds_text="", stats_text=""
    )
