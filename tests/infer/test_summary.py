"""lib.infer.summary: the lines a run prints at its end."""

from lib.infer.summary import summary

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
