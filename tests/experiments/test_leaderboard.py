"""lib.experiments.leaderboard: `dvc exp show --json` rows to a ranked table of what each run
changed and scored."""

from __future__ import annotations

from lib.experiments.leaderboard import Entry, entries, flatten, ranked, render

METRICS = "metrics/ensemble.json"


def row(rev: str, params: dict, oof: dict | None = None, **extra) -> dict:
    """One row as `dvc exp show --json` gives it (the parts the leaderboard reads)."""
    data = {"params": {"params.yaml": {"data": params}}}
    if oof is not None:
        data["metrics"] = {METRICS: {"data": {"oof": oof}}}
    return {"rev": rev, "data": data, **extra}


BASE = {"lr": 0.001, "download": {"retries": 2}, "tta": "flip"}
SHOW = [
    row("workspace", BASE | {"tta": "flip6"}),
    row("a1b2c3d4e5", BASE, {"accuracy": 0.84, "log_loss": 0.45}, name="main", experiments=[
        {"revs": [row("1111111aaa", BASE | {"lr": 0.01}, {"accuracy": 0.88, "log_loss": 0.50},
                      name="big-lr")]},
        {"revs": [row("2222222bbb", BASE | {"download": {"retries": 5}},
                      {"accuracy": 0.86, "log_loss": 0.40})],
         "executor": {"state": "running"}},
    ]),
]


def test_flatten_names_nested_params_as_dash_s_does():
    assert flatten({"download": {"retries": 2, "x": {"y": 1}}, "lr": 0.1}) == {
        "download.retries": 2, "download.x.y": 1, "lr": 0.1}


def test_each_run_lists_only_the_params_it_changed_from_its_baseline():
    rows = entries(SHOW, metrics_file=METRICS)
    assert [r.name for r in rows] == ["workspace", "main (baseline)", "big-lr",
                                      "2222222 (running)"]
    assert [r.changed for r in rows] == [{"tta": "flip6"}, {}, {"lr": 0.01},
                                         {"download.retries": 5}]
    assert rows[2].metrics.items() >= {"oof acc": 0.88, "oof loss": 0.50}.items()
    assert rows[0].metrics == {}  # the workspace has no metrics yet


def test_ranked_by_accuracy_or_by_log_loss_with_unscored_runs_last():
    rows = entries(SHOW, metrics_file=METRICS)
    assert [r.name for r in ranked(rows, metric="accuracy")] == [
        "big-lr", "2222222 (running)", "main (baseline)", "workspace"]
    assert [r.name for r in ranked(rows, metric="log_loss")] == [
        "2222222 (running)", "main (baseline)", "big-lr", "workspace"]


def test_render_fits_the_width_and_wraps_the_changed_params():
    many = {f"param_{i}": i for i in range(12)}
    table = render([Entry("a-long-experiment-name", {}, {"oof acc": 0.9}, many),
                    Entry("b", {}, {})], width=80)
    lines = table.splitlines()
    assert lines[0].split() == ["#", "experiment", "oof", "acc", "oof", "loss", "test", "acc",
                                "changed", "params"]
    assert all(len(line) <= 80 for line in lines)
    assert "0.9000" in lines[2] and "param_0=0" in lines[2]
    assert "param_11=11" in table and len(lines) > 4  # wrapped over several lines
    assert lines[-1].split()[:2] == ["2", "b"] and lines[-1].split()[-1] == "-"


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
