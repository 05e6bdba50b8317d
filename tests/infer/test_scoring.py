from lib.infer.scoring import headline

DETAIL = {"oof": {"accuracy": 0.8, "accuracy_prior": 0.81, "log_loss": 0.6,
                  "log_loss_clipped": 0.55, "log_loss_prior": 0.58,
                  "log_loss_prior_clipped": 0.52, "top3_accuracy": 0.95},
          "fold0": {"accuracy": 0.79}, "test": {"accuracy": 0.83, "log_loss_submitted": 0.5}}


def test_the_headline_scores_what_is_submitted():
    assert headline(DETAIL, prior_correction=False) == {
        "oof": {"accuracy": 0.8, "log_loss": 0.55}, "test": {"accuracy": 0.83}}
    assert headline(DETAIL, prior_correction=True)["oof"] == {"accuracy": 0.81,
                                                              "log_loss": 0.52}


def test_no_test_numbers_without_answers():
    assert "test" not in headline({"oof": DETAIL["oof"]}, prior_correction=False)
