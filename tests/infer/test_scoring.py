"""lib.infer.scoring: the scores of one set of predictions, the headline, the known answers."""

import numpy as np
import pytest

from lib.common.errors import UserError
from lib.infer.scoring import headline, read_answers, score

DETAIL = {
    "oof": {
        "accuracy": 0.8,
        "accuracy_prior": 0.81,
        "log_loss": 0.6,
        "log_loss_clipped": 0.55,
        "log_loss_prior": 0.58,
        "log_loss_prior_clipped": 0.52,
        "top3_accuracy": 0.95,
    },
    "fold0": {"accuracy": 0.79},
    "test": {"accuracy": 0.83, "log_loss_submitted": 0.5},
}


def test_the_headline_scores_what_is_submitted():
    assert headline(DETAIL, prior_correction=False) == {
        "oof": {"accuracy": 0.8, "log_loss": 0.55},
        "test": {"accuracy": 0.83},
    }
    assert headline(DETAIL, prior_correction=True)["oof"] == {"accuracy": 0.81, "log_loss": 0.52}


def test_no_test_numbers_without_answers():
    assert "test" not in headline({"oof": DETAIL["oof"]}, prior_correction=False)


def test_the_headline_carries_the_competitions_metric():
    detail = {
        "oof": DETAIL["oof"] | {"map@5": 0.7, "map@5_prior": 0.72},
        "test": DETAIL["test"] | {"map@5": 0.75},
    }
    assert headline(detail, prior_correction=False, metric="map@5") == {
        "oof": {"accuracy": 0.8, "log_loss": 0.55, "map@5": 0.7},
        "test": {"accuracy": 0.83, "map@5": 0.75},
    }
    assert headline(detail, prior_correction=True, metric="map@5")["oof"]["map@5"] == 0.72
    # accuracy and log loss are there already: no second key
    assert headline(DETAIL, prior_correction=False, metric="log_loss")["oof"] == {
        "accuracy": 0.8,
        "log_loss": 0.55,
    }


def test_answers_of_a_competition_whose_labels_are_names(tmp_path):
    path = tmp_path / "test_labels.csv"
    path.write_text("id,label\na1,dog\na2,cat\n")
    frame = read_answers(path, {1: "cat", 2: "dog"})
    assert frame.to_dict("list") == {"id": ["a1", "a2"], "label": [2, 1]}
    path.write_text("id,label\na1,wolf\n")
    with pytest.raises(UserError, match=r"line 2: label 'wolf' is not one of the competition's"):
        read_answers(path, {1: "cat", 2: "dog"})
    path.write_text("id,label\na1,2\n")
    assert read_answers(path).to_dict("list") == {"id": ["a1"], "label": [2]}


def test_clipping_caps_the_log_loss_of_a_confident_mistake():
    probs = np.array([[0.5, 0.5], [0.0, 1.0], [0.25, 0.75]])
    scores = score(probs, np.array([0, 0, 1]), low=0.01, high=0.99)
    assert scores["log_loss_clipped"] < scores["log_loss"]  # clipping caps the 1e-15 mistake


def test_score_reports_raw_clipped_and_prior_corrected():
    probs = np.array([[0.7, 0.3], [0.6, 0.4]])
    columns = np.array([0, 1])
    scores = score(
        probs,
        columns,
        low=0.01,
        high=0.99,
        source=np.array([0.7, 0.3]),
        target=np.array([0.5, 0.5]),
    )
    assert scores["accuracy"] == 0.5  # row 2 is wrong until the prior is divided out
    assert scores["accuracy_prior"] == 1.0  # row 1 ties at (0.5, 0.5): column 0, right
    # corrected rows: (0.5, 0.5) and (0.6/0.7, 0.4/0.3) renormalised
    second = (0.4 / 0.3) / (0.6 / 0.7 + 0.4 / 0.3)
    assert scores["log_loss_prior"] == pytest.approx(-(np.log(0.5) + np.log(second)) / 2)
    assert {"top3_accuracy", "log_loss_clipped", "log_loss_prior_clipped"} <= set(scores)
