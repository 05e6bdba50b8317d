"""dvc.yaml declares exactly what each stage runs and reads: its code deps are the import
closure of the stage's modules (lib.common.code_deps), and its params are the stage modules' PARAMS
(the knobs in SPEED_PARAMS are read but are not deps)."""

from __future__ import annotations

import fnmatch
import importlib

import pytest

from lib.common.code_deps import (
    NOT_DEPS,
    code_deps,
    entry_modules,
    import_closure,
    imported_modules,
    rewrite_code_deps,
    rewrite_dvc_yaml,
    rewrite_params,
    stage_definitions,
)
from tests.conftest import REPO

STAGES = stage_definitions(REPO)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_are_the_import_closure(name):
    stage = STAGES[name]
    runs = set(code_deps(REPO, stage["cmd"]))
    declared = {d for d in stage.get("deps", []) if d.endswith(".py")}
    assert not runs - declared, (
        f"dvc.yaml stage {name} misses code deps {sorted(runs - declared)}: run `make deps`"
    )
    assert not declared - runs, (
        f"dvc.yaml stage {name} lists code it does not run: "
        f"{sorted(declared - runs)}: run `make deps`"
    )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_param_deps_are_what_the_stage_modules_read(name):
    stage = STAGES[name]
    modules = [importlib.import_module(m) for m in entry_modules(stage["cmd"])]
    reads = {key for m in modules for key in m.PARAMS}
    speed = {key for m in modules for key in m.SPEED_PARAMS}
    declared = set(stage.get("params", []))
    assert reads == declared, (
        f"dvc.yaml stage {name}: params {sorted(declared)}, but the code reads {sorted(reads)}"
    )
    assert not speed & declared


def test_the_rewrite_keeps_dvc_yaml_as_it_is():
    assert rewrite_dvc_yaml(REPO) == (REPO / "dvc.yaml").read_text()


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("download", "lib.acquire.download.DownloadConfig"),
        ("stats", "lib.prepare.stats.StatsConfig"),
        ("folds", "lib.prepare.folds.FoldsConfig"),
        ("train", "lib.train.loop.TrainConfig"),
        ("predict", "lib.infer.inference.PredictConfig"),
    ],
)
def test_a_stages_params_are_its_configs_keys_that_change_outputs(name, config):
    module, _, attribute = config.rpartition(".")
    config_class = getattr(importlib.import_module(module), attribute)
    declared = STAGES[name]["params"]
    assert len(set(declared)) == len(declared)
    assert set(declared) == set(config_class.dep_keys())
    assert not set(declared) & set(config_class.speed_keys())


def test_the_params_rewrite_keeps_the_order_drops_stale_keys_and_appends_new_ones():
    text = (
        "stages:\n  s:\n    cmd: python -m stages.s\n    # read\n    params:\n"
        "      - b\n      - old\n      - a\n    outs:\n      - x\n"
        "  t:\n    cmd: python -m stages.t\n    params:\n      - z\n"
    )
    assert rewrite_params(text, {"s": ["a", "b", "c"]}) == (
        "stages:\n  s:\n    cmd: python -m stages.s\n    # read\n    params:\n"
        "      - b\n      - a\n      - c\n    outs:\n      - x\n"
        "  t:\n    cmd: python -m stages.t\n    params:\n      - z\n"
    )
    last = "stages:\n  s:\n    params:\n      - a\n"
    assert rewrite_params(last, {"s": ["a", "b"]}) == last + "      - b\n"


def test_a_comment_in_a_params_list_stays_above_its_keys_and_goes_with_them():
    text = (
        "stages:\n  s:\n    params:\n      - a\n      # why b and c\n      - b\n      - c\n"
        "      # why d\n      - d\n    # after the list\n    outs:\n      - x\n"
    )
    assert rewrite_params(text, {"s": ["a", "c", "e"]}) == (
        "stages:\n  s:\n    params:\n      - a\n      # why b and c\n      - c\n"
        "      - e\n    # after the list\n    outs:\n      - x\n"
    )


def test_the_rewrite_fills_a_missing_dep_and_drops_a_stale_one(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "stages").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "a.py").write_text("def f():\n    from lib import b\n")  # lazy
    (tmp_path / "lib" / "b.py").write_text("import json\n")
    (tmp_path / "lib" / "old.py").write_text("")
    (tmp_path / "stages" / "s.py").write_text("from lib.a import f\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: python -m stages.s --fold 1\n    deps:\n"
        "      # code\n      - lib/old.py\n      - data/x\n"
    )
    assert rewrite_code_deps(tmp_path) == (
        "stages:\n  s:\n    cmd: python -m stages.s --fold 1\n    deps:\n"
        "      # code\n      - lib/a.py\n      - lib/b.py\n      - stages/s.py\n      - data/x\n"
    )


def test_launch_runs_the_stage_it_starts():
    assert entry_modules("python -m stages.launch stages.train --fold 0") == [
        "stages.launch",
        "stages.train",
    ]
    assert "lib/train/distributed.py" in import_closure(REPO, ["stages.train"])


def test_allow_listed_modules_exist_and_from_package_imports_count(tmp_path):
    assert all((REPO / path).is_file() for path in NOT_DEPS)
    (tmp_path / "m.py").write_text("from lib.train import distributed\n")
    assert "lib.train.distributed" in imported_modules(REPO, tmp_path / "m.py")


def test_training_does_not_depend_on_the_test_images():
    deps = STAGES["train"]["deps"]
    assert "data/images" not in deps and "data/images/test" not in deps
    assert {"data/images/train", "data/folds.csv"} <= set(deps)


@pytest.mark.parametrize("name", ["train", "predict", "stats", "download"])
def test_speed_knobs_are_not_deps(name):
    params = set(STAGES[name].get("params", []))
    assert not params & {
        "workers",
        "batch_size" if name == "predict" else "",
        "compile",
        "stats.workers",
        "download.workers",
        "download.concurrency",
    }


# What each stage may run: the code that can change its outputs. A module outside its patterns
# (the downloader's OS tuning in train's deps, the ensemble's code in predict's) means an edit
# there would re-run the stage for nothing: move the shared part below both users instead.
_EVERY_STAGE = ["stages/common.py", "lib/common/*"]
MAY_RUN = {
    "check_competition": ["stages/check_competition.py", "lib/acquire/presence.py"],
    "download": ["stages/download.py", "lib/acquire/*"],
    "stats": ["stages/stats.py", "lib/prepare/stats.py"],
    "folds": ["stages/folds.py", "lib/prepare/folds.py", "lib/prepare/duplicates.py"],
    # + how a finished run's predictions are found, read and merged over its folds
    # (pseudo_from, distill_from): they decide the pseudo-labels and the distilled targets
    "train": [
        "stages/launch.py",
        "stages/train.py",
        "lib/prepare/folds.py",
        "lib/train/*",
        "lib/infer/members.py",
        "lib/infer/runs.py",
        "lib/infer/combine.py",
        "lib/infer/merge.py",
        "lib/infer/predictions.py",
    ],
    # the model and its inputs as training built them, not the training loop
    "predict": [
        "stages/predict.py",
        "lib/prepare/folds.py",
        "lib/train/checkpoint.py",
        "lib/train/data.py",
        "lib/train/device.py",
        "lib/train/heads.py",
        "lib/train/model.py",
        "lib/infer/fold_predictions.py",
        "lib/infer/merge.py",
        "lib/infer/inference.py",
        "lib/infer/predictions.py",
        "lib/infer/tta.py",
    ],
    # the competition's files and layouts (test labels, classes), not the downloader
    "ensemble": [
        "stages/ensemble.py",
        "lib/prepare/folds.py",
        "lib/acquire/competition_json.py",
        "lib/acquire/records.py",
        "lib/acquire/competition_files.py",
        "lib/acquire/layouts.py",
        "lib/acquire/named_files.py",
        "lib/acquire/tinyimagenet.py",
        "lib/experiments/*",
        "lib/infer/*",
    ],
}


def outside(deps: list[str], patterns: list[str]) -> list[str]:
    """The deps that no pattern (fnmatch, `*` within one package) allows."""
    return [
        dep
        for dep in deps
        if not any(fnmatch.fnmatch(dep, pattern) for pattern in _EVERY_STAGE + patterns)
    ]


def test_every_stage_has_a_rule():
    assert set(MAY_RUN) == set(STAGES)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_runs_only_the_code_that_can_change_its_outputs(name):
    extra = outside(code_deps(REPO, STAGES[name]["cmd"]), MAY_RUN[name])
    assert not extra, (
        f"stage {name} imports {extra}: an edit there would re-run it; give what "
        f"it needs a home below both users"
    )


def test_the_rule_catches_a_downloader_module_in_training():
    train = code_deps(REPO, STAGES["train"]["cmd"])
    assert outside([*train, "lib/acquire/oskit.py"], MAY_RUN["train"]) == ["lib/acquire/oskit.py"]
    assert outside(["lib/infer/combine.py"], MAY_RUN["predict"]) == ["lib/infer/combine.py"]
    assert outside(["lib/train/loop.py"], MAY_RUN["predict"]) == ["lib/train/loop.py"]


def test_stages_holds_the_pipelines_stages_and_what_they_share_only():
    """Commands run by hand live in commands/; stages/ holds what dvc.yaml runs (launch starts
    train under torchrun), and the plumbing they share."""
    started = {m for stage in STAGES.values() for m in entry_modules(stage["cmd"])}
    modules = {f"stages.{p.stem}" for p in (REPO / "stages").glob("*.py") if p.stem != "__init__"}
    assert modules - started == {"stages.common", "stages.prechecks"}
    assert started <= modules


def test_no_stage_runs_a_commands_code():
    for name, stage in STAGES.items():
        assert not [d for d in code_deps(REPO, stage["cmd"]) if d.startswith("commands/")], name


def test_no_stage_but_the_download_runs_the_downloaders_os_tuning():
    for name, stage in STAGES.items():
        deps = code_deps(REPO, stage["cmd"])
        assert ("lib/acquire/oskit.py" in deps) == (name == "download"), name


def test_a_module_that_cannot_change_outputs_brings_none_of_its_imports():
    """train runs the prechecks (which read the competition and the submission's shape) before
    its work; neither they nor what only they import are deps: editing the submission code
    retrains nothing."""
    assert "stages.prechecks" in imported_modules(REPO, REPO / "stages" / "train.py")
    deps = code_deps(REPO, STAGES["train"]["cmd"])
    assert not {
        "stages/prechecks.py",
        "lib/infer/prechecks.py",
        "lib/infer/submission.py",
        "lib/acquire/layouts.py",
    } & set(deps)
