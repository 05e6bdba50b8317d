from lib.infer.scoring import headline, summary

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
    import pytest

    from lib.common.errors import UserError
    from lib.infer.scoring import read_answers

    path = tmp_path / "test_labels.csv"
    path.write_text("id,label\na1,dog\na2,cat\n")
    frame = read_answers(path, {1: "cat", 2: "dog"})
    assert frame.to_dict("list") == {"id": ["a1", "a2"], "label": [2, 1]}
    path.write_text("id,label\na1,wolf\n")
    with pytest.raises(UserError, match=r"line 2: label 'wolf' is not one of the competition's"):
        read_answers(path, {1: "cat", 2: "dog"})
    path.write_text("id,label\na1,2\n")
    assert read_answers(path).to_dict("list") == {"id": ["a1"], "label": [2]}


SUBMITTED = {"rows": 4, "filled_missing_images": 1}
FIT = {
    "objective": "log_loss",
    "weights": {"predictions": 0.6875, "b0-64": 0.3125},
    "nested_oof": {"accuracy": 0.82, "log_loss": 0.5},
    "equal_oof": {"accuracy": 0.81, "log_loss": 0.51},
}


def test_the_summary_names_the_prior_corrected_scores_only_when_they_are_submitted():
    detail = DETAIL | {"submission": SUBMITTED}
    plain = summary(detail, "label", prior_correction=False)
    assert "prior" not in plain.replace("under the prior", "")
    assert "OOF accuracy 0.8000 (top-3 0.9500), log loss 0.6000 raw / 0.5500 clipped" in plain
    corrected = summary(detail, "label", prior_correction=True).splitlines()
    assert (
        "prior-corrected (as submitted): OOF accuracy 0.8100, log loss 0.5800 raw / "
        "0.5200 clipped" in corrected
    )


def test_the_summary_prints_each_members_fitted_weight_by_name():
    lines = summary(DETAIL | {"submission": SUBMITTED, "weights": FIT}, "proba").splitlines()
    assert (
        "blend weights fitted on the OOF log loss: this run 0.688, b0-64 0.312; nested OOF "
        "accuracy 0.8200, log loss 0.5000 (equal weights: 0.8100, 0.5100)"
    ) in lines
    assert not any(
        "blend weights" in line
        for line in summary(DETAIL | {"submission": SUBMITTED}, "proba").splitlines()
    )
