"""A leaderboard of DVC experiments: each run with only the params it changed and its headline
numbers, best out-of-fold score first, in a table that fits a terminal; one table per
competition (the `competition` param), since scores on two competitions do not compare.

In: the output of `dvc exp show --json` (a list of baseline commits and the workspace, each
with its experiments) and the headline metrics file. Out: Entry rows (commits without an
experiment left out, failed queued experiments carrying the line of their log that says why),
grouped by competition (`by_competition`), ranked by the competition's metric (`group_metric`,
`ranked`: its `oof.<metric>`, lowest first for log loss, highest first for the others);
`render` gives a group's table as text, `render_failures` its failed experiments.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADLINE = (
    ("oof acc", "oof", "accuracy"),
    ("oof loss", "oof", "log_loss"),
    ("test acc", "test", "accuracy"),
)


@dataclass
class Entry:
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    changed: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why a failed experiment failed (a line of its log)

    @property
    def competition(self) -> str:
        return str(self.params.get("competition", "?"))


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"download": {"retries": 2}} -> {"download.retries": 2}, as `-S` names them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _data(row: dict, kind: str, path: str) -> dict:
    return ((row.get("data") or {}).get(kind) or {}).get(path, {}).get("data") or {}


def _entry(row: dict, name: str, metrics_file: str) -> Entry:
    metrics = _data(row, "metrics", metrics_file)
    numbers = {label: metrics.get(group, {}).get(key) for label, group, key in HEADLINE}
    numbers |= {f"oof {key}": value for key, value in metrics.get("oof", {}).items()}
    return Entry(
        name=name,
        params=flatten(_data(row, "params", "params.yaml")),
        metrics={k: v for k, v in numbers.items() if isinstance(v, int | float)},
    )


def read_log(path: str) -> str | None:
    """The text of an experiment's log file, None when it is gone."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def entries(
    show: list[dict],
    *,
    metrics_file: str = "metrics/ensemble.json",
    logs: Callable[[str], str | None] = read_log,
) -> list[Entry]:
    """The workspace, the first baseline (HEAD), every other commit that has experiments, and
    the experiments, each with the params that differ from its baseline's. A failed experiment
    carries `failure_line` of its log (`logs` reads one by path)."""
    rows: list[Entry] = []
    workspace = head = None
    for row in show:
        if row.get("rev") == "workspace":
            workspace = _entry(row, "workspace", metrics_file)
            continue
        baseline = _entry(row, f"{row.get('name') or row['rev'][:7]} (baseline)", metrics_file)
        experiments = row.get("experiments") or []
        if head is None:
            head = baseline
        elif not experiments:
            continue  # a commit nobody experimented from: noise in `--all`
        rows.append(baseline)
        for experiment in experiments:
            executor = experiment.get("executor") or {}
            state = executor.get("state")
            for rev in experiment.get("revs") or []:
                name = rev.get("name") or experiment.get("name") or rev["rev"][:7]
                entry = _entry(
                    rev,
                    name + (f" ({state})" if state in ("running", "failed", "queued") else ""),
                    metrics_file,
                )
                entry.changed = _changes(entry.params, baseline.params)
                if state == "failed" or rev.get("error"):
                    log = (executor.get("local") or {}).get("log")
                    entry.error = failure_line(logs(log) if log else None)
                rows.append(entry)
    if workspace is not None and head is not None:
        workspace.changed = _changes(workspace.params, head.params)
    return ([workspace] if workspace else []) + rows


# A dep missing from an experiment's temporary copy: DVC copies only what git or DVC tracks.
_MISSING_IN_COPY = re.compile(
    r"No such file or directory: '[^']*?/\.dvc/tmp/exps/"
    r"(?:[^/']+/)*?tmp[^/']*/([^']+)'"
)


def failure_line(log: str | None) -> str:
    """The line of a failed experiment's log that says why: a stage's own `error: ...` line
    when there is one, else DVC's last `ERROR:` line; a folder missing from the experiment's
    copy of the project gets the fix (`dvc add` it and commit)."""
    if not log:
        return "no log (see `dvc queue logs <name>`)"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("error: ")]
    theirs = [line for line in lines if line.startswith("ERROR:")]
    line = (ours or theirs or lines[-1:])[-1]
    missing = _MISSING_IN_COPY.search(line)
    if missing:
        folder = missing.group(1)
        return (
            f"{folder} is not in the experiment's copy of the project (DVC copies only what "
            f"git or DVC tracks): run `dvc add {folder}`, commit {folder}.dvc, queue again"
        )
    return line


def by_competition(rows: list[Entry]) -> dict[str, list[Entry]]:
    """The rows of each competition, in the order the competitions first appear."""
    groups: dict[str, list[Entry]] = {}
    for row in rows:
        groups.setdefault(row.competition, []).append(row)
    return groups


def group_metric(rows: list[Entry], default: str = "accuracy") -> str:
    """The metric a competition's runs are ranked by: the `metric` param most of them set
    (`default` when none does)."""
    counts = Counter(row.params["metric"] for row in rows if row.params.get("metric"))
    return counts.most_common(1)[0][0] if counts else default


def _changes(params: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    keys = sorted(params.keys() | baseline.keys())
    return {k: params.get(k) for k in keys if params.get(k) != baseline.get(k)}


def ranked(rows: list[Entry], *, metric: str = "accuracy") -> list[Entry]:
    """Best OOF `metric` first: lowest for log loss, highest for the others; rows without a
    score last."""
    lower = metric == "log_loss"

    def key(entry: Entry) -> tuple[bool, float]:
        value = entry.metrics.get(f"oof {metric}")
        return value is None, (value if lower else -value) if value is not None else 0.0

    return sorted(rows, key=key)


def _columns(metric: str) -> tuple[tuple[str, str, str], ...]:
    """HEADLINE, and the metric's column when it is another."""
    if metric in ("accuracy", "log_loss"):
        return HEADLINE
    return (*HEADLINE, (metric[:8], "oof", metric))


def render(rows: list[Entry], *, width: int = 120, metric: str = "accuracy") -> str:
    """A fixed-column table; the changed params wrap within the last column."""
    columns = _columns(metric)
    name_width = min(max([len(r.name) for r in rows] + [10]), 32)
    head = (
        f"{'#':>3}  {'experiment':<{name_width}}"
        + "".join(f"  {label:>8}" for label, _, _ in columns)
        + "  changed params"
    )
    params_width = max(width - (len(head) - len("changed params")), 20)
    indent = " " * (width - params_width)
    lines = [head, "-" * min(width, len(head) + params_width - len("changed params"))]
    for rank, row in enumerate(rows, start=1):
        cells = f"{rank:>3}  {row.name[:name_width]:<{name_width}}" + "".join(
            f"  {_number(row.metrics.get(f'{group} {key}', row.metrics.get(label))):>8}"
            for label, group, key in columns
        )
        changed = ", ".join(f"{k}={v}" for k, v in row.changed.items()) or "-"
        wrapped = textwrap.wrap(changed, params_width) or ["-"]
        lines.append(f"{cells}  {wrapped[0]}")
        lines += [indent + more for more in wrapped[1:]]
    return "\n".join(lines)


def render_failures(rows: list[Entry], *, width: int = 120) -> str:
    """One line per failed experiment: its name and why (empty when none failed)."""
    failed = [row for row in rows if row.error is not None]
    return "\n".join(
        textwrap.fill(
            f"failed: {row.name.removesuffix(' (failed)')}: {row.error}",
            width,
            subsequent_indent="    ",
        )
        for row in failed
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
