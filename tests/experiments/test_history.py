from datetime import datetime

from lib.experiments.history import history_name, keep_copy


def test_the_name_says_when_which_experiment_and_the_score():
    when = datetime(2026, 12, 1, 15, 4, 5)
    assert (
        history_name(experiment="lofty-pads", score_name="oof-acc", score=0.84104, when=when)
        == "20261201-150405_lofty-pads_oof-acc0.8410.csv"
    )
    assert (
        history_name(experiment=None, score_name="oof-logloss", score=0.5, when=when)
        == "20261201-150405_workspace_oof-logloss0.5000.csv"
    )
    assert (
        history_name(experiment="a/../b c", score_name="s", score=1, when=when)
        == "20261201-150405_a-..-b-c_s1.0000.csv"
    )


def test_each_run_adds_a_copy_and_keeps_the_others(tmp_path):
    submission = tmp_path / "submission.csv"
    submission.write_text("id,predicted\n1,2\n")
    first = keep_copy(
        submission,
        tmp_path / "history",
        experiment="a",
        score_name="s",
        score=0.5,
        when=datetime(2026, 1, 1),
    )
    submission.write_text("id,predicted\n1,3\n")
    second = keep_copy(
        submission,
        tmp_path / "history",
        experiment="b",
        score_name="s",
        score=0.6,
        when=datetime(2026, 1, 2),
    )
    assert first.read_text() == "id,predicted\n1,2\n"
    assert second.read_text() == "id,predicted\n1,3\n"
    assert sorted(p.name for p in (tmp_path / "history").iterdir()) == [first.name, second.name]


def test_a_copy_is_named_by_the_competitions_metric(tmp_path):
    from lib.experiments.history import keep_submission

    submission = tmp_path / "submission.csv"
    submission.write_text("id,predicted\n1,2\n")
    kept = keep_submission(
        submission,
        tmp_path / "h",
        experiment="e",
        metric="map@3",
        headline={"oof": {"accuracy": 0.5, "map@3": 0.61234}},
    )
    assert kept.name.endswith("_e_oof-map@3_0.6123.csv")
    kept = keep_submission(
        submission,
        tmp_path / "h",
        experiment="e",
        metric="log_loss",
        headline={"oof": {"accuracy": 0.5, "log_loss": 0.4}},
    )
    assert kept.name.endswith("_e_oof-logloss0.4000.csv")
