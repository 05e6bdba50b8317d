"""The bundle's refusals and how it points the notebook at the sample submission (the whole
bundle, run as a notebook, is tested end to end in tests/test_pipeline.py)."""

from pathlib import Path

import pytest

from lib.common.errors import UserError
from lib.export.bundle import TTA_KEYS, check_current, lock_params, sample_entry, this_run

LOCK = {
    "stages": {
        "predict@0": {
            "params": {
                "params.yaml": {
                    "tta": "flip",
                    "tta_merge": "mean",
                    "tta_crop": 0.875,
                    "tta_scales": [1.0],
                }
            }
        },
        "ensemble": {"params": {"params.yaml": {"ensemble_runs": ["b0"], "clip_low": 0.001}}},
        "download": {"params": {"params.yaml": {"download.max_side": None}}},
    }
}
PARAMS = {
    "tta": "flip",
    "tta_merge": "mean",
    "tta_crop": 0.875,
    "tta_scales": [1.0],
    "train_folds": [0],
    "batch_size": 64,
    "ensemble_merge": "mean",
    "ensemble_runs": ["b0"],
    "ensemble_weights": [],
    "prior_correction": False,
    "target_prior": "uniform",
    "clip_low": 0.001,
    "clip_high": 0.99,
    "submission_format": "label",
    "download.min_side": 8,
    "download.max_pixels": 1,
    "download.max_side": None,
    "download.jpeg_quality": 90,
    "download.max_bytes": 1,
}


def test_the_run_is_what_its_last_repro_made():
    run = this_run(PARAMS, LOCK, check_runs=True)
    assert run.folds == [0] and run.settings == {k: PARAMS[k] for k in TTA_KEYS} | {
        "batch_size": 64
    }


def test_a_setting_changed_since_the_last_repro_is_refused():
    with pytest.raises(
        UserError,
        match=r"^params.yaml: tta = 'flip6', but predict@0 last ran "
        r"with 'flip': run `dvc repro` first",
    ):
        check_current(PARAMS | {"tta": "flip6"}, LOCK, "predict@0", TTA_KEYS)
    # the runs named on the command line replace ensemble_runs: not a stale run
    this_run(PARAMS | {"ensemble_runs": []}, LOCK, check_runs=False)
    with pytest.raises(UserError, match="ensemble last ran with"):
        this_run(PARAMS | {"ensemble_runs": []}, LOCK, check_runs=True)


def test_a_run_never_reproduced_is_refused():
    with pytest.raises(UserError, match="dvc.lock has no stage predict@3: run `dvc repro`"):
        lock_params(LOCK, "predict@3")


def test_the_sample_comes_from_the_competition_mount_or_the_bundle(tmp_path):
    competition, bundle = tmp_path / "comp", tmp_path / "bundle"
    competition.mkdir()
    bundle.mkdir()
    (competition / "sample_submission.csv").write_text("id,label\n1,2\n")
    assert sample_entry(competition / "sample_submission.csv", competition, bundle) == (
        "sample_submission.csv",
        False,
    )
    elsewhere = tmp_path / "mine.csv"
    elsewhere.write_text("id,label\n1,3\n")
    assert sample_entry(elsewhere, competition, bundle) == ("sample_submission.csv", True)
    assert (bundle / "sample_submission.csv").read_text() == "id,label\n1,3\n"
    assert sample_entry(None, competition, bundle) == (None, False)
    assert not Path(bundle / "other").exists()
