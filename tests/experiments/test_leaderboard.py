"""lib.experiments.leaderboard on `dvc exp show --json` output shaped as DVC 3 writes it: one table
per competition, commits without experiments left out, failed queued experiments with why."""

from __future__ import annotations

from lib.experiments.leaderboard import (
    Entry,
    by_competition,
    entries,
    failure_line,
    flatten,
    group_metric,
    ranked,
    render,
    render_failures,
)

DEMO = {"competition": "data/demo", "lr": 0.003, "submission_format": "label", "tta": "flip"}
DOGS = DEMO | {"competition": "data/dogs", "submission_format": "proba", "metric": "log_loss"}


def rev(
    name: str | None, params: dict, acc: float | None = None, loss: float | None = None
) -> dict:
    metrics = (
        {}
        if acc is None
        else {"metrics/ensemble.json": {"data": {"oof": {"accuracy": acc, "log_loss": loss}}}}
    )
    return {
        "rev": (name or "f00d").ljust(40, "0"),
        "name": name,
        "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics},
    }


def experiment(
    name: str,
    params: dict,
    acc: float | None = None,
    loss: float | None = None,
    state: str | None = None,
    log: str | None = None,
) -> dict:
    executor = None if state is None else {"state": state, "local": {"log": log}}
    return {"name": name, "revs": [rev(name, params, acc, loss)], "executor": executor}


def show() -> list[dict]:
    """The workspace; HEAD (dogs, two experiments); an older commit without experiments; the
    commit before it (demo: one experiment, one that failed in the queue)."""
    return [
        {"rev": "workspace", **rev(None, DOGS | {"lr": 0.01})} | {"rev": "workspace"},
        {
            **rev("main", DOGS, 0.7, 0.9),
            "experiments": [
                experiment("dogs-lr", DOGS | {"lr": 0.001}, 0.72, 0.8),
                experiment("dogs-flip6", DOGS | {"tta": "flip6"}, 0.75, 1.1),
            ],
        },
        {**rev(None, DEMO, 0.8, 0.5), "rev": "a" * 40, "experiments": []},
        {
            **rev(None, DEMO, 0.84, 0.52),
            "rev": "b" * 40,
            "experiments": [
                experiment("demo-lr", DEMO | {"lr": 0.001}, 0.85, 0.5),
                experiment("q-big", DEMO | {"lr": 5}, state="failed", log="/logs/q-big.out"),
            ],
        },
    ]


LOG = (
    "Reproducing experiment 'q-big'\nRunning stage 'train@0':\n"
    "> python -m stages.launch stages.train --fold 0\n"
    "error: params.yaml: lr = 5 is not allowed: expected a number <= 1\n"
    "ERROR: failed to reproduce 'train@0': failed to run: python -m stages.launch ...\n"
)


def test_one_group_per_competition_each_ranked_by_its_own_score():
    rows = entries(show(), logs={"/logs/q-big.out": LOG}.get)
    groups = by_competition(rows)
    assert list(groups) == ["data/dogs", "data/demo"]
    dogs, demo = groups["data/dogs"], groups["data/demo"]
    assert (group_metric(dogs), group_metric(demo)) == ("log_loss", "accuracy")
    assert [r.name for r in ranked(dogs, metric="log_loss")] == [
        "dogs-lr",
        "main (baseline)",
        "dogs-flip6",
        "workspace",
    ]
    assert [r.name for r in ranked(demo, metric="accuracy")] == [
        "demo-lr",
        "bbbbbbb (baseline)",
        "q-big (failed)",
    ]
    assert {r.name: r.changed for r in dogs}["workspace"] == {"lr": 0.01}  # against HEAD


def test_commits_without_experiments_are_left_out_but_head_stays():
    names = [r.name for r in entries(show(), logs=lambda path: None)]
    assert "aaaaaaa (baseline)" not in names and "bbbbbbb (baseline)" in names
    lonely_head = [{**rev("main", DEMO, 0.8, 0.5), "experiments": []}]
    assert [r.name for r in entries(lonely_head)] == ["main (baseline)"]


def test_a_failed_queued_experiment_shows_the_line_that_says_why():
    rows = entries(show(), logs={"/logs/q-big.out": LOG}.get)
    failed = next(r for r in rows if r.name == "q-big (failed)")
    assert failed.error == "error: params.yaml: lr = 5 is not allowed: expected a number <= 1"
    assert failed.changed == {"lr": 5} and failed.metrics == {}
    text = render_failures(by_competition(rows)["data/demo"], width=120)
    assert text.startswith("failed: q-big: error: params.yaml: lr = 5 is not allowed")
    assert render_failures(by_competition(rows)["data/dogs"]) == ""
    table = render(by_competition(rows)["data/demo"], width=120)
    assert "q-big (failed)" in table and max(len(line) for line in table.splitlines()) <= 120


def test_a_folder_missing_from_the_experiments_copy_gets_the_fix():
    log = (
        "ERROR: failed to reproduce 'download': [Errno 2] No such file or directory: "
        "'/home/k/proj/.dvc/tmp/exps/tmp1d1di2vi/data/ankle-boots'\n"
    )
    assert failure_line(log) == (
        "data/ankle-boots is not in the experiment's copy of the project (DVC copies only what "
        "git or DVC tracks): run `dvc add data/ankle-boots`, commit data/ankle-boots.dvc, "
        "queue again"
    )
    standalone = log.replace("exps/tmp1d1di2vi", "exps/standalone/tmpvmyni4oc")
    assert "`dvc add data/ankle-boots`" in failure_line(standalone)


def test_without_a_log_or_our_line_dvcs_last_error_is_shown():
    assert failure_line(None).startswith("no log")
    assert failure_line("x\nERROR: one\nERROR: two\n") == "ERROR: two"
    assert failure_line("only text\n") == "only text"


def test_flatten_names_nested_params_as_dash_s_does():
    assert flatten({"download": {"retries": 2, "x": {"y": 1}}, "lr": 0.1}) == {
        "download.retries": 2,
        "download.x.y": 1,
        "lr": 0.1,
    }


def test_render_fits_the_width_and_wraps_the_changed_params():
    many = {f"param_{i}": i for i in range(12)}
    table = render(
        [Entry("a-long-experiment-name", {}, {"oof acc": 0.9}, many), Entry("b", {}, {})], width=80
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "#",
        "experiment",
        "oof",
        "acc",
        "oof",
        "loss",
        "test",
        "acc",
        "changed",
        "params",
    ]
    assert all(len(line) <= 80 for line in lines)
    assert "0.9000" in lines[2] and "param_0=0" in lines[2]
    assert "param_11=11" in table and len(lines) > 4  # wrapped over several lines
    assert lines[-1].split()[:2] == ["2", "b"] and lines[-1].split()[-1] == "-"


def test_ranked_by_the_metric_highest_first_or_lowest_for_log_loss():
    experiments = [
        {
            "name": f"exp{i}",
            "revs": [
                {
                    "rev": f"{i:07d}",
                    "name": f"exp{i}",
                    "data": {
                        "metrics": {"metrics/ensemble.json": {"data": {"oof": oof}}},
                        "params": {"params.yaml": {"data": {"lr": i}}},
                    },
                }
            ],
        }
        for i, oof in enumerate(
            (
                {"accuracy": 0.8, "log_loss": 0.5, "map@5": 0.6},
                {"accuracy": 0.7, "log_loss": 0.4, "map@5": 0.9},
                {"accuracy": 0.9, "log_loss": 0.6, "map@5": 0.7},
            )
        )
    ]
    rows = [
        r
        for r in entries(
            [{"rev": "abcdef0", "name": "main", "data": {}, "experiments": experiments}]
        )
        if r.name.startswith("exp")
    ]
    assert [r.name for r in ranked(rows, metric="map@5")] == ["exp1", "exp2", "exp0"]
    assert [r.name for r in ranked(rows, metric="log_loss")] == ["exp1", "exp0", "exp2"]
    assert [r.name for r in ranked(rows, metric="accuracy")] == ["exp2", "exp0", "exp1"]
    table = render(ranked(rows, metric="map@5"), metric="map@5")
    assert "map@5" in table.splitlines()[0] and "0.9000" in table.splitlines()[2]
