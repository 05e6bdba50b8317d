"""lib.infer.teachers: what taught the folds' models, read back from their checkpoints."""

from __future__ import annotations

import torch

from lib.infer.teachers import recorded_teaching

PSEUDO = {"from": "round1", "commit": "a" * 40, "threshold": 0.9, "per_class": {"1": 2}}


def save(path, **teaching) -> object:
    torch.save({"state_dict": {}, "params": {"lr": 0.1} | teaching}, path)
    return path


def test_folds_taught_alike_give_one_entry_naming_the_folds(tmp_path):
    files = {k: save(tmp_path / f"{k}.pt", pseudo=PSEUDO) for k in (0, 1)}
    assert recorded_teaching(files) == {"pseudo_labels": PSEUDO | {"folds": [0, 1]}}


def test_folds_taught_differently_give_one_entry_per_fold(tmp_path):
    other = PSEUDO | {"commit": "b" * 40}
    files = {
        0: save(tmp_path / "0.pt", pseudo=PSEUDO, distill={"from": "base", "alpha": 0.7}),
        1: save(tmp_path / "1.pt", pseudo=other),
    }
    found = recorded_teaching(files)
    assert found["pseudo_labels"] == {"fold0": PSEUDO, "fold1": other}
    assert found["distillation"] == {"from": "base", "alpha": 0.7, "folds": [0]}


def test_untaught_missing_or_unreadable_models_add_nothing(tmp_path):
    (tmp_path / "2.pt").write_bytes(b"cut short")
    files = {0: save(tmp_path / "0.pt"), 1: tmp_path / "absent.pt", 2: tmp_path / "2.pt"}
    assert recorded_teaching(files) == {}
