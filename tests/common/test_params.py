import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lib.acquire.download import DownloadConfig
from lib.common.errors import ParamError
from lib.common.params import RULES, Config, read_params_file
from lib.common.params import load_params as load_keys
from lib.infer.blending import EnsembleConfig
from lib.infer.inference import PredictConfig
from lib.prepare.folds import FoldsConfig
from lib.prepare.stats import StatsConfig
from lib.train.loop import TrainConfig
from tests.conftest import PARAMS_FIXTURE, REPO

# Every stage's config; with RULES, they hold the rule of every key of params.yaml.
CONFIGS: tuple[type[Config], ...] = (
    DownloadConfig,
    StatsConfig,
    FoldsConfig,
    TrainConfig,
    PredictConfig,
    EnsembleConfig,
)
EVERY_RULE = RULES | {key: rule for config in CONFIGS for key, rule in config.rules().items()}


def load_params(keys, path):
    """load_params with the rule of any key, whether RULES or a config holds it."""
    return load_keys(keys, path, rules=EVERY_RULE)


def write_params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def dotted_keys(params: dict) -> list[str]:
    """Every key of a params file, `section.key` inside a section, in file order."""
    return [
        f"{k}.{sub}" if isinstance(v, dict) else k
        for k, v in params.items()
        for sub in (v if isinstance(v, dict) else [None])
    ]


def test_the_tests_params_have_exactly_the_keys_of_params_yaml():
    """tests/params.yaml (what the tests run on) and params.yaml (the user's) hold the same
    keys in the same order, whatever values the user has set: a key added to one goes in both."""
    shipped = dotted_keys(read_params_file(REPO / "params.yaml"))
    fixture = dotted_keys(read_params_file(PARAMS_FIXTURE))
    assert fixture == shipped, (
        f"only in params.yaml: {sorted(set(shipped) - set(fixture))}; "
        f"only in {PARAMS_FIXTURE}: {sorted(set(fixture) - set(shipped))}"
    )


def test_default_params_are_all_valid_and_all_have_rules(monkeypatch):
    flat = dotted_keys(read_params_file(PARAMS_FIXTURE))
    assert sorted(flat) == sorted(EVERY_RULE)
    monkeypatch.chdir(REPO)  # competition is a path relative to the repo
    assert load_params(flat, PARAMS_FIXTURE)["competition"] == "data/demo"


def test_values_come_back_by_dotted_key(tmp_path):
    path = write_params(tmp_path, "lr: 0.1\ndownload:\n  retries: 3\n")
    assert load_params(["lr", "download.retries"], path) == {"lr": 0.1, "download.retries": 3}


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ("lr: -1\n", "lr", "a number > 0"),
        ("lr: 'fast'\n", "lr", "a number > 0"),
        ("lr: .inf\n", "lr", "a number > 0"),  # finite too
        ("epochs: 0\n", "epochs", "an integer >= 1"),
        ("epochs: true\n", "epochs", "an integer >= 1"),
        ("optimizer: adam\n", "optimizer", "one of sgd, adamw"),
        ("tta: flip7\n", "tta", "one of none, flip, flip5, flip6"),
        ("tta_scales: []\n", "tta_scales", "a non-empty list of scale factors"),
        ("ensemble_runs: ['exp a']\n", "ensemble_runs", "a list of distinct runs"),
        ("ensemble_runs: [exp-a, exp-a]\n", "ensemble_runs", "a list of distinct runs"),
        ("ensemble_runs: [1234567]\n", "ensemble_runs", "a DVC experiment name or a git revision"),
        ("ensemble_weights: fitted\n", "ensemble_weights", "auto (fitted on the out-of-fold"),
        ("target_prior: balanced\n", "target_prior", "uniform or the path of a label_id,prior CSV"),
        ("submission_format: csv\n", "submission_format", "one of label, proba"),
        ("train_folds: [0, 0]\n", "train_folds", "distinct fold numbers"),
        ("workers: many\n", "workers", "auto or an integer >= 0"),
        ("amp: fp8\n", "amp", "one of auto, bf16, fp16, off"),
        ("gpus: 0\n", "gpus", "an integer >= 1"),
        ("sync_bn: 'yes'\n", "sync_bn", "true or false"),
        ("competition: nowhere\n", "competition", "a folder that holds train.json"),
        ("pseudo_from: 'round one'\n", "pseudo_from", "empty (none), a DVC experiment name"),
        ("distill_from: 1234567\n", "distill_from", "a git revision or an existing folder"),
        ("pseudo_threshold: 1.5\n", "pseudo_threshold", "a number >= 0 and <= 1.0"),
        ("pseudo_weight: 0\n", "pseudo_weight", "a number > 0 and <= 10.0"),
        ("pseudo_soft: 'yes'\n", "pseudo_soft", "true or false"),
        ("distill_alpha: -0.1\n", "distill_alpha", "a number >= 0 and <= 1.0"),
    ],
)
def test_bad_value_names_key_value_and_what_is_allowed(tmp_path, text, key, allowed):
    path = write_params(tmp_path, text)
    with pytest.raises(ParamError) as error:
        load_params([key], path)
    message = str(error.value)
    assert key in message and allowed in message and "\n" not in message
    assert repr(read_params_file(path)[key]) in message


def test_train_folds_must_lie_below_folds(tmp_path):
    path = write_params(tmp_path, "folds: 3\ntrain_folds: [0, 3]\n")
    with pytest.raises(ParamError, match=r"train_folds = \[0, 3\].*0 to folds - 1 = 2"):
        load_params(["folds", "train_folds"], path)


def test_ensemble_weights_need_one_per_member(tmp_path):
    (tmp_path / "b3").mkdir()
    path = write_params(
        tmp_path, f"ensemble_runs: [{tmp_path / 'b3'}]\nensemble_weights: [1, 2, 3]\n"
    )
    with pytest.raises(
        ParamError, match=r"ensemble_weights = \[1, 2, 3\].*expected auto, \[\] or 2"
    ):
        load_params(["ensemble_runs", "ensemble_weights"], path)


def test_ensemble_runs_take_folders_experiment_names_and_revisions_and_auto_weights(tmp_path):
    (tmp_path / "b3").mkdir()
    runs = [str(tmp_path / "b3"), "exp-a", "v1.2", "HEAD~1", "abc1234", "runs/gone"]
    path = write_params(tmp_path, f"ensemble_runs: {runs}\nensemble_weights: auto\n")
    assert load_params(["ensemble_runs", "ensemble_weights"], path) == {
        "ensemble_runs": runs,
        "ensemble_weights": "auto",
    }


def test_a_run_to_learn_from_is_none_a_name_a_revision_or_a_folder(tmp_path):
    (tmp_path / "b3").mkdir()
    for value in ("", "none", "round-1", "HEAD~1", "abc1234", str(tmp_path / "b3")):
        path = write_params(tmp_path, f"pseudo_from: '{value}'\ndistill_from: '{value}'\n")
        assert load_params(["pseudo_from", "distill_from"], path) == {
            "pseudo_from": value,
            "distill_from": value,
        }
    path = write_params(tmp_path, "pseudo_from:\ndistill_from:\n")  # empty: none
    assert load_params(["pseudo_from", "distill_from"], path) == {
        "pseudo_from": None,
        "distill_from": None,
    }


def test_missing_key_and_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamError, match="missing key 'download.retries'"):
        load_params(["download.retries"], write_params(tmp_path, "download: {}\n"))
    with pytest.raises(ParamError, match="file not found"):
        load_params(["lr"], tmp_path / "nope.yaml")
    with pytest.raises(ParamError, match="not valid YAML"):
        load_params(["lr"], write_params(tmp_path, "lr: [\n"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("lr: 1e-05\n", 1e-05),  # what `dvc exp run -S lr=1e-5` writes
        ("lr: 3e-4\n", 3e-4),  # a string under YAML 1.1 (no dot in the mantissa)
        ("lr: .5\n", 0.5),
        ("lr: 1E3\n", 1000.0),
        ("lr: 2.5e+2\n", 250.0),
    ],
)
def test_numbers_load_as_dvc_writes_them(tmp_path, text, value):
    assert load_params(["lr"], write_params(tmp_path, text)) == {"lr": value}


def test_yaml_1_2_words_are_text_not_booleans(tmp_path):
    # DVC reads params with YAML 1.2: `on` is a string there, so it must be here too
    with pytest.raises(ParamError, match="sync_bn = 'on' is not allowed: expected true or false"):
        load_params(["sync_bn"], write_params(tmp_path, "sync_bn: on\n"))


def test_a_duplicate_key_is_an_error_with_both_lines(tmp_path):
    path = write_params(tmp_path, "epochs: 3\nlr: 0.1\nepochs: 5\n")
    with pytest.raises(
        ParamError,
        match=r'params.yaml:3:1: duplicate key "epochs" '
        r"\(first at line 1\)",
    ):
        load_params(["lr"], path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("lr: [0.1\nepochs: 3\n", ":2:7:"),
        ("lr: 0.1\n  epochs: 3\n", ":2:9:"),
        ("lr: 'open\n", ":2:1:"),
    ],
)
def test_a_syntax_error_names_line_and_column(tmp_path, text, where):
    with pytest.raises(ParamError, match="not valid YAML") as error:
        load_params(["lr"], write_params(tmp_path, text))
    assert where in str(error.value) and "\n" not in str(error.value)


def test_a_file_that_is_not_a_mapping_or_not_text(tmp_path):
    with pytest.raises(ParamError, match="expected a mapping"):
        load_params(["lr"], write_params(tmp_path, "- lr\n"))
    path = tmp_path / "params.yaml"
    path.write_bytes(b"lr: \xff\xfe\n")
    with pytest.raises(ParamError, match="not UTF-8"):
        load_params(["lr"], path)
    with pytest.raises(ParamError, match="not valid YAML"):
        load_params(["lr"], write_params(tmp_path, "[" * 5000))


@pytest.mark.parametrize(
    ("seed", "ok"), [(0, True), (2**32 - 1, True), (2**32, False), (-1, False)]
)
def test_seed_stays_within_what_numpy_and_torch_accept(tmp_path, seed, ok):
    path = write_params(tmp_path, f"seed: {seed}\n")
    if ok:
        assert load_params(["seed"], path) == {"seed": seed}
    else:
        with pytest.raises(
            ParamError,
            match=f"seed = {seed} is not allowed: expected an integer >= 0 and <= 4294967295",
        ):
            load_params(["seed"], path)


@pytest.mark.parametrize("keys", [["lr"], ["train_folds"], ["folds"], []])
def test_train_folds_beyond_folds_stops_every_stage_before_any_work(tmp_path, keys):
    # train@k reads neither key (only folds.csv): the first stage that loads params stops
    path = write_params(tmp_path, "folds: 2\ntrain_folds: [0, 1, 2]\nlr: 0.1\n")
    with pytest.raises(
        ParamError,
        match=r"train_folds = \[0, 1, 2\] is not allowed: expected "
        r"fold numbers from 0 to folds - 1 = 1 \(folds = 2\): "
        r"drop fold 2 from train_folds or raise folds",
    ):
        load_params(keys, path)
    fine = write_params(tmp_path, "folds: 3\ntrain_folds: [0, 2]\nlr: 0.1\n")
    assert set(load_params(keys, fine)) == set(keys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metric: map@5\nsubmission_format: proba\n", "proba with metric = map@5 is not allowed"),
        ("metric: qwk\nsubmission_format: topk\n", "topk with metric = qwk is not allowed"),
    ],
)
def test_a_submission_shape_the_metric_cannot_score_is_refused(tmp_path, text, message):
    with pytest.raises(ParamError, match=message):
        load_params(["metric", "submission_format"], write_params(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "metric: map@3\nsubmission_format: topk\n",
        "metric: map@5\nsubmission_format: label\n",
        "metric: log_loss\nsubmission_format: proba\n",
    ],
)
def test_shapes_the_metric_scores_are_allowed(tmp_path, text):
    load_params(["metric", "submission_format"], write_params(tmp_path, text))


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("'^(.+_\\d+$'", "missing ), unterminated subpattern"),
        ("'^.+_\\d+$'", "it has no group"),
        ("map@6", None),
    ],
)
def test_label_pattern_needs_a_group_and_metric_a_known_name(tmp_path, value, allowed):
    key = "metric" if value == "map@6" else "label_pattern"
    with pytest.raises(
        ParamError,
        match=f"{key} = .* is not allowed: expected "
        + (".*" + re.escape(allowed) if allowed else "one of accuracy, log_loss"),
    ):
        load_params([key], write_params(tmp_path, f"{key}: {value}\n"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_is_a_key_of_both_params_files(config):
    shipped = set(dotted_keys(read_params_file(REPO / "params.yaml")))
    fixture = set(dotted_keys(read_params_file(PARAMS_FIXTURE)))
    keys = config.param_keys()
    assert keys and len(set(keys)) == len(keys)
    assert not set(keys) - shipped, f"{config.__name__}: not in params.yaml"
    assert not set(keys) - fixture, f"{config.__name__}: not in {PARAMS_FIXTURE}"


def test_each_rule_is_written_once():
    """A field without a rule reads RULES' (a key several configs or other code read); a field
    with one holds a key RULES has not, and no other config writes a rule for it."""
    own: dict[str, str] = {}
    for config in CONFIGS:
        for spec in config.params():
            if spec.rule is None:
                assert spec.key in RULES, f"{config.__name__}.{spec.key}: no rule anywhere"
                continue
            assert spec.key not in RULES, f"{spec.key}: a rule on {config.__name__} and in RULES"
            assert spec.key not in own, f"{spec.key}: on {own[spec.key]} and {config.__name__}"
            own[spec.key] = config.__name__


def test_a_config_loads_checked_values_and_says_what_is_not_allowed(tmp_path):
    text = PARAMS_FIXTURE.read_text().replace("\nlr: 0.003", "\nlr: -1")
    path = write_params(tmp_path, text)
    with pytest.raises(ParamError) as error:
        TrainConfig.load(path)
    assert str(error.value) == f"{path}: lr = -1 is not allowed: expected a number > 0"
    path = write_params(tmp_path, text.replace("\nlr: -1", "\nlr: 0.1"))
    config = TrainConfig.load(path)
    assert config.lr == 0.1 and config.channels_last is None
    assert config.values()["lr"] == 0.1 and "workers" not in config.dep_values()


def test_a_config_part_reads_its_section(tmp_path):
    text = PARAMS_FIXTURE.read_text().replace("  retries: 2 ", "  retries: 5 ")
    text = text.replace("data/demo", str(REPO / "data/demo"))
    config = DownloadConfig.load(write_params(tmp_path, text))
    assert config.settings.retries == 5 and config.competition.endswith("data/demo")
    assert "download.retries" in DownloadConfig.dep_keys()
    assert "download.workers" in DownloadConfig.speed_keys()
    assert config.values()["download.retries"] == 5


def test_a_key_without_a_rule_is_a_mistake_in_the_code(tmp_path):
    with pytest.raises(KeyError, match="lr: no rule"):
        load_keys(["lr"], write_params(tmp_path, "lr: 0.1\n"))
    assert load_keys(["lr"], write_params(tmp_path, "lr: 0.1\n"), rules=TrainConfig.rules())


def _git_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
    }


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, env=_git_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_dvc_exp_run_set_param_changes_only_the_lines_of_the_keys_it_sets(tmp_path):
    """`dvc exp run -S` rewrites params.yaml through ruamel: a file in that shape comes back
    with the set value changed and every other line (comments, lists, empty values) intact."""
    text = PARAMS_FIXTURE.read_text()
    (tmp_path / "params.yaml").write_text(text)
    keys = [
        "lr",
        "train_folds",
        "tta_scales",
        "ensemble_runs",
        "ensemble_weights",
        "kaggle_competition",
        "download.max_side",
    ]
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"noop": {"cmd": "python -c pass", "params": keys}}})
    )
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "start"],
    ):
        _run(command, tmp_path)
    _run(["dvc", "exp", "run", "-S", "lr=0.002"], tmp_path)
    diff = _run(["git", "diff", "-U0", "params.yaml"], tmp_path)
    changed = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert [line.split("#")[0].strip() for line in changed] == ["-lr: 0.003", "+lr: 0.002"]

    (tmp_path / "params.yaml").write_text(text)
    _run(
        [
            "dvc",
            "exp",
            "run",
            "-S",
            "train_folds=[0,1]",
            "-S",
            "ensemble_runs=[a,b]",
            "-S",
            "tta_scales=[1.0,1.15]",
            "-S",
            "kaggle_competition=dogs",
        ],
        tmp_path,
    )
    after = (tmp_path / "params.yaml").read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert [line for line in after.splitlines() if line.lstrip().startswith("#")] == comments
    values = read_params_file(tmp_path / "params.yaml")
    assert (
        values["train_folds"],
        values["ensemble_runs"],
        values["tta_scales"],
        values["kaggle_competition"],
    ) == ([0, 1], ["a", "b"], [1.0, 1.15], "dogs")
    assert {
        key: value
        for key, value in values.items()
        if key not in {"train_folds", "ensemble_runs", "tta_scales", "kaggle_competition"}
    } == {
        key: value
        for key, value in read_params_file(PARAMS_FIXTURE).items()
        if key not in {"train_folds", "ensemble_runs", "tta_scales", "kaggle_competition"}
    }


def test_the_ensemble_reads_its_config_and_one_list_of_metrics():
    """stages/ensemble.py's params are EnsembleConfig's keys; the metric rule allows exactly the
    metrics lib.infer.metrics scores (one tuple)."""
    import stages.ensemble
    from lib.common import params
    from lib.infer import metrics

    assert EnsembleConfig.dep_keys() == stages.ensemble.PARAMS and not EnsembleConfig.speed_keys()
    assert metrics.METRICS is params.METRICS
    assert {m for m in metrics.METRICS if RULES["metric"](m) is None} == set(metrics.METRICS)
    assert RULES["metric"]("auc") == "one of " + ", ".join(metrics.METRICS)
    config = EnsembleConfig.from_params(read_params_file(PARAMS_FIXTURE))
    assert config.values()["clip_low"] == config.clip_low and config.train_folds == [0, 1, 2]
