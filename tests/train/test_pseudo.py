"""lib.train.pseudo and lib.train.teaching: pseudo-labels from a finished run's test
predictions, read from a real run folder (the .npz files predict writes), joining every fold's
training set and never its validation set; one fold trained on them end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lib.common.errors import UserError
from lib.common.images import list_test_images
from lib.infer.predictions import Predictions, save_predictions
from lib.infer.teachers import recorded_teaching
from lib.prepare.folds import HOLDOUT
from lib.train import fold as fold_module
from lib.train.checkpoint import load_checkpoint
from lib.train.distributed import Dist
from lib.train.fold import fold_data, train_fold
from lib.train.mix import mix_batch, soft_cross_entropy
from lib.train.pseudo import pseudo_labels, select
from lib.train.source_run import read_source_run
from lib.train.teaching import SoftTargetDataset, Teaching, load_teaching
from tests.train.test_fold import STATS, config, folds_table

CLASSES = [1, 2, 3]


def write_run(
    folder: Path,
    folds: pd.DataFrame,
    *,
    test_probs: np.ndarray,
    test_ids: list[str],
    classes: list[int] = CLASSES,
    seed: int = 0,
) -> Path:
    """A run's predictions/ folder as predict writes it: fold<k>/{oof,test}.npz for each fold of
    `folds`, OOF rows with real probabilities (Dirichlet draws) and the test rows given."""
    rng = np.random.default_rng(seed)
    for k in sorted(set(folds["fold"]) - {HOLDOUT}):
        rows = folds[folds["fold"] == k]
        oof = Predictions(
            probs=rng.dirichlet(np.ones(len(classes)), len(rows)).astype(np.float32),
            image_ids=rows["image_id"].to_numpy(str),
            classes=np.array(classes),
            splits=rows["split"].to_numpy(str),
            targets=rows["label"].to_numpy(np.int64),
        )
        save_predictions(folder / f"fold{k}" / "oof.npz", oof)
        test = Predictions(
            probs=np.asarray(test_probs, np.float32),
            image_ids=np.array(test_ids, str),
            classes=np.array(classes),
        )
        save_predictions(folder / f"fold{k}" / "test.npz", test)
    return folder


# The fixture's 4 test images ("1".."4"): sure of class 1, of class 3, unsure, sure of class 2.
TEST_PROBS = np.array(
    [[0.95, 0.03, 0.02], [0.05, 0.05, 0.90], [0.40, 0.35, 0.25], [0.08, 0.91, 0.01]]
)


@pytest.fixture
def run_folder(image_tree, tmp_path) -> Path:
    _, ids = list_test_images(image_tree / "test")
    return write_run(
        tmp_path / "round1", folds_table(image_tree), test_probs=TEST_PROBS, test_ids=ids
    )


def labels_from(image_tree: Path, run: Path, **kw) -> object:
    paths, ids = list_test_images(image_tree / "test")
    options = {"threshold": 0.9, "weight": 1.0, "soft": False} | kw
    return pseudo_labels(
        read_source_run("pseudo_from", str(run)),
        classes=CLASSES,
        test_paths=paths,
        test_ids=ids,
        **options,
    )


def test_select_keeps_rows_at_or_above_the_threshold_as_one_hot_or_their_probabilities():
    probs = np.array([[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
    chosen, hard = select(probs, threshold=0.6, soft=False)
    assert chosen.tolist() == [0, 2]  # 0.6 is at the threshold: kept
    assert hard.tolist() == [[1, 0], [0, 1]]
    chosen, soft = select(probs, threshold=0.6, soft=True)
    assert np.allclose(soft, probs[[0, 2]]) and soft.dtype == np.float32
    assert select(probs, threshold=0.9, soft=False)[0].tolist() == []


def test_the_threshold_picks_the_images_and_counts_them_per_class(image_tree, run_folder):
    labels = labels_from(image_tree, run_folder, threshold=0.9)
    assert labels.ids == ["1", "2", "4"]
    assert [p.name for p in labels.paths] == ["1.png", "2.png", "4.png"]
    assert labels.targets.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert labels.per_class == {1: 1, 2: 1, 3: 1}
    prov = labels.provenance
    assert prov["from"] == str(run_folder) and prov["commit"] is None and prov["images"] == 3
    assert prov["per_class"] == {"1": 1, "2": 1, "3": 1} and len(prov["sha256"]) == 64
    lower = labels_from(image_tree, run_folder, threshold=0.4)
    assert lower.ids == ["1", "2", "3", "4"] and lower.per_class == {1: 2, 2: 1, 3: 1}
    soft = labels_from(image_tree, run_folder, threshold=0.9, soft=True)
    assert np.allclose(soft.targets, TEST_PROBS[[0, 1, 3]], atol=1e-6)


def test_the_digest_follows_the_predictions_read(image_tree, run_folder, tmp_path):
    first = labels_from(image_tree, run_folder).provenance["sha256"]
    _, ids = list_test_images(image_tree / "test")
    other = write_run(
        tmp_path / "other",
        folds_table(image_tree),
        test_probs=TEST_PROBS[[1, 0, 2, 3]],
        test_ids=ids,
    )
    assert labels_from(image_tree, other).provenance["sha256"] != first
    assert labels_from(image_tree, run_folder).provenance["sha256"] == first


def test_a_run_of_other_test_images_or_classes_is_refused_in_one_line(image_tree, tmp_path):
    folds = folds_table(image_tree)
    other_ids = write_run(
        tmp_path / "other-ids", folds, test_probs=TEST_PROBS, test_ids=["1", "2", "3", "9"]
    )
    with pytest.raises(UserError) as err:
        labels_from(image_tree, other_ids)
    message = str(err.value)
    assert "\n" not in message and f"pseudo_from = {other_ids}" in message
    assert "other test images" in message and "'9'" in message and "'4'" in message

    four = np.full((4, 4), 0.25)
    other_classes = write_run(
        tmp_path / "other-classes",
        folds,
        test_probs=four,
        test_ids=["1", "2", "3", "4"],
        classes=[1, 2, 3, 4],
    )
    with pytest.raises(UserError) as err:
        labels_from(image_tree, other_classes)
    message = str(err.value)
    assert "\n" not in message and f"pseudo_from = {other_classes}" in message
    assert "other classes" in message and "[4]" in message


def test_a_name_that_is_no_run_is_refused_naming_the_param(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no git repository here: only a folder could be a run
    with pytest.raises(UserError) as err:
        read_source_run("pseudo_from", "round-one", root=tmp_path)
    message = str(err.value)
    assert message.startswith("pseudo_from: 'round-one' is not a folder") and "\n" not in message


def test_pseudo_images_join_every_training_set_with_their_weight_never_a_validation_set(
    image_tree, run_folder, monkeypatch
):
    teaching = Teaching(pseudo=labels_from(image_tree, run_folder, weight=0.5))
    pseudo_paths = {str(p) for p in teaching.pseudo.paths}
    made = []  # the spy: every dataset the fold's loaders are made of
    real = fold_module.make_loader
    monkeypatch.setattr(
        fold_module,
        "make_loader",
        lambda dataset, **kw: made.append((dataset, kw["shuffle"])) or real(dataset, **kw),
    )
    folds = folds_table(image_tree)
    for fold in (0, 1):
        made.clear()
        data = fold_data(
            folds,
            fold,
            images_dir=image_tree,
            stats=STATS,
            config=config(),
            env=Dist(),
            teaching=teaching,
        )
        (train, shuffled), (val, in_order) = made
        assert shuffled and not in_order
        assert data.train.dataset is train and data.val.dataset is val
        assert not pseudo_paths & {str(p) for p in val.paths}
        assert pseudo_paths <= {str(p) for p in train.paths}
        assert isinstance(train, SoftTargetDataset) and type(val).__name__ == "ImageDataset"
        labelled = (folds["fold"] != fold) & (folds["fold"] != HOLDOUT)
        sums = train.rows.sum(dim=1)
        assert len(train) == labelled.sum() + 3
        assert torch.allclose(sums[: labelled.sum()], torch.ones(int(labelled.sum())))
        assert torch.allclose(sums[labelled.sum() :], torch.full((3,), 0.5))
        # the loader yields (image, target row), rows summing to each image's weight
        images, rows = next(iter(data.train))
        assert images.shape[1:] == (3, 16, 16) and rows.shape[1] == 3


def test_a_row_sum_weights_the_image_in_the_loss_through_smoothing_and_mixing():
    logits = torch.randn(4, 3)
    rows = torch.eye(3)[[0, 1, 2, 0]] * torch.tensor([1.0, 1.0, 0.5, 0.5])[:, None]
    per_image = torch.nn.functional.cross_entropy(
        logits, torch.tensor([0, 1, 2, 0]), reduction="none"
    )
    expected = (per_image * torch.tensor([1.0, 1.0, 0.5, 0.5])).mean()
    assert torch.allclose(soft_cross_entropy(logits, rows), expected)
    images = torch.rand(4, 3, 8, 8)

    def mixed(targets: torch.Tensor, mixup: float, cutmix: float) -> torch.Tensor:
        torch.manual_seed(3)  # the same draws each time
        return mix_batch(
            images,
            targets,
            num_classes=3,
            mixup_prob=mixup,
            cutmix_prob=cutmix,
            alpha=1.0,
            smoothing=0.1,
        )[1]

    other = torch.rand(4, 3)
    for mixup, cutmix in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        # smoothing and mixing are linear in the rows, so an image's weight is carried along
        assert torch.allclose(
            mixed(rows + other, mixup, cutmix),
            mixed(rows, mixup, cutmix) + mixed(other, mixup, cutmix),
        )
        assert torch.allclose(mixed(2 * rows, mixup, cutmix), 2 * mixed(rows, mixup, cutmix))
        weights = mixed(rows, mixup, cutmix).sum(dim=1)
        assert ((weights >= 0.5 - 1e-6) & (weights <= 1 + 1e-6)).all()
    assert torch.allclose(mixed(rows, 0.0, 0.0).sum(dim=1), rows.sum(dim=1))
    one_hot = torch.eye(3)[[0, 1, 2, 0]]
    torch.manual_seed(5)
    _, from_rows = mix_batch(
        images, one_hot, num_classes=3, mixup_prob=0.5, cutmix_prob=0.5, alpha=1.0, smoothing=0.1
    )
    torch.manual_seed(5)
    _, from_ids = mix_batch(
        images,
        torch.tensor([0, 1, 2, 0]),
        num_classes=3,
        mixup_prob=0.5,
        cutmix_prob=0.5,
        alpha=1.0,
        smoothing=0.1,
    )
    assert torch.allclose(from_rows, from_ids)  # a one-hot row is its class index


def test_a_fold_trains_on_pseudo_labels_and_distilled_targets_and_records_them(
    image_tree, run_folder, tmp_path
):
    folds = folds_table(image_tree)
    teaching = load_teaching(
        config(
            pseudo_from=str(run_folder),
            pseudo_threshold=0.9,
            pseudo_weight=0.5,
            pseudo_soft=True,
            distill_from=str(run_folder),
            distill_alpha=0.7,
        ),
        folds=folds,
        fold=0,
        test_dir=image_tree / "test",
    )
    mixed = config(mixup=0.5, cutmix=0.5)
    data = fold_data(
        folds, 0, images_dir=image_tree, stats=STATS, config=mixed, env=Dist(), teaching=teaching
    )
    provenance = {"lr": mixed.lr} | teaching.provenance()
    epochs = []
    train_fold(
        data,
        fold=0,
        config=mixed,
        provenance=provenance,
        stats=STATS,
        key="k",
        model_path=tmp_path / "model.pt",
        resume_path=tmp_path / "resume.pt",
        device=torch.device("cpu"),
        env=Dist(),
        on_epoch=epochs.append,
    )
    assert len(epochs) == 1 and np.isfinite(epochs[0].train_loss)
    saved = load_checkpoint(tmp_path / "model.pt")["params"]
    assert saved["pseudo"]["images"] == 3 and saved["pseudo"]["soft"] is True
    assert len(saved["pseudo"]["images_sha256"]) == 64
    assert saved["distill"]["alpha"] == 0.7 and saved["distill"]["from"] == str(run_folder)
    detail = recorded_teaching({0: tmp_path / "model.pt", 1: tmp_path / "absent.pt"})
    assert detail["pseudo_labels"]["per_class"] == {"1": 1, "2": 1, "3": 1}
    assert detail["pseudo_labels"]["folds"] == [0] and detail["distillation"]["folds"] == [0]
    assert recorded_teaching({1: tmp_path / "absent.pt"}) == {}


def test_with_no_source_run_nothing_changes(image_tree):
    teaching = load_teaching(
        config(
            pseudo_from=None,
            pseudo_threshold=0.9,
            pseudo_weight=1.0,
            pseudo_soft=False,
            distill_from="",
            distill_alpha=0.7,
        ),
        folds=folds_table(image_tree),
        fold=0,
        test_dir=image_tree / "test",
    )
    assert not teaching and teaching.provenance() == {}
    data = fold_data(
        folds_table(image_tree),
        0,
        images_dir=image_tree,
        stats=STATS,
        config=config(),
        env=Dist(),
        teaching=teaching,
    )
    assert type(data.train.dataset).__name__ == "ImageDataset"
