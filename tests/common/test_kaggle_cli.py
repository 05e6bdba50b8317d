import json
import subprocess

import pytest

from lib.common.errors import UserError
from lib.common.kaggle_cli import (
    check_credentials,
    experiment_name,
    require_slug,
    submission_message,
)


def test_credentials_from_any_place_the_kaggle_tool_reads(tmp_path):
    check_credentials({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"})
    check_credentials({"KAGGLE_API_TOKEN": "t"})
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "kaggle.json").write_text("{}")
    check_credentials({"KAGGLE_CONFIG_DIR": str(tmp_path / "conf")})
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text("{}")
    check_credentials({"HOME": str(tmp_path)})


def test_no_credentials_is_one_line_saying_where_kaggle_json_goes(tmp_path):
    with pytest.raises(UserError) as error:
        check_credentials({"HOME": str(tmp_path), "KAGGLE_USERNAME": "only-the-name"})
    message = str(error.value)
    assert "\n" not in message and "~/.kaggle/kaggle.json" in message
    assert str(tmp_path / ".kaggle") in message


def test_a_slug_is_required():
    assert require_slug("dog-breed-identification") == "dog-breed-identification"
    with pytest.raises(UserError, match="kaggle_competition is null in params.yaml"):
        require_slug(None)


def test_the_message_names_the_run_and_its_score():
    params = {
        "arch": "tf_efficientnet_lite0",
        "img_size": 48,
        "train_folds": [0, 1, 2],
        "tta": "flip6",
        "ensemble_runs": [],
    }
    assert submission_message(
        name="lofty-pads", params=params, headline={"oof": {"accuracy": 0.84104, "log_loss": 0.5}}
    ) == (
        "lofty-pads | tf_efficientnet_lite0 | 48px | 3 folds | tta flip6 | OOF acc 0.8410 | "
        "OOF logloss 0.5000"
    )


def git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_the_experiment_is_found_by_its_committed_metrics(tmp_path):
    metrics = tmp_path / "metrics" / "ensemble.json"
    metrics.parent.mkdir()
    git(tmp_path, "init", "-q")
    metrics.write_text(json.dumps({"oof": {"accuracy": 0.5}}))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "baseline")
    baseline = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, text=True, capture_output=True
    ).stdout.strip()
    metrics.write_text(json.dumps({"oof": {"accuracy": 0.7}}, indent=2))
    git(tmp_path, "commit", "-qam", "an experiment")
    # DVC keeps experiments as refs/exps/<baseline[:2]>/<baseline[2:]>/<name>
    git(tmp_path, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/lofty-pads", "HEAD")
    git(tmp_path, "reset", "-q", "--hard", baseline)
    assert experiment_name(tmp_path, metrics.relative_to(tmp_path)).startswith("workspace@")
    metrics.write_text(json.dumps({"oof": {"accuracy": 0.7}}))  # `dvc exp apply lofty-pads`
    assert experiment_name(tmp_path, metrics.relative_to(tmp_path)) == "lofty-pads"
