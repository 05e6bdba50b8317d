"""The leaderboard ranks by the competition's metric, in its direction."""

from lib.experiments.leaderboard import entries, ranked, render


def show(*oofs: dict) -> list[dict]:
    experiments = [{"revs": [{"rev": f"{i:07d}", "name": f"exp{i}", "data": {
        "metrics": {"metrics/ensemble.json": {"data": {"oof": oof}}},
        "params": {"params.yaml": {"data": {"lr": i}}}}}]} for i, oof in enumerate(oofs)]
    return [{"rev": "abcdef0", "name": "main", "data": {}, "experiments": experiments}]


def test_ranked_by_the_metric_highest_first_or_lowest_for_log_loss():
    rows = entries(show({"accuracy": 0.8, "log_loss": 0.5, "map@5": 0.6},
                        {"accuracy": 0.7, "log_loss": 0.4, "map@5": 0.9},
                        {"accuracy": 0.9, "log_loss": 0.6, "map@5": 0.7}))
    assert [r.name for r in ranked(rows, metric="map@5")][:3] == ["exp1", "exp2", "exp0"]
    assert [r.name for r in ranked(rows, metric="log_loss")][:3] == ["exp1", "exp0", "exp2"]
    assert [r.name for r in ranked(rows, metric="accuracy")][:3] == ["exp2", "exp0", "exp1"]
    assert ranked(rows, metric="map@5")[-1].name == "main (baseline)"  # no score: last
    table = render(ranked(rows, metric="map@5"), metric="map@5")
    assert "map@5" in table.splitlines()[0] and "0.9000" in table.splitlines()[2]
