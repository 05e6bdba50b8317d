"""A leaderboard of DVC experiments: each run with only the params it changed and its headline
numbers, best out-of-fold score first, in a table that fits a terminal.

In: the output of `dvc exp show --json` (a list of baseline commits and the workspace, each
with its experiments), the headline metrics file and the competition's metric, which ranks the
runs (its `oof.<metric>`, lowest first for log loss, highest first for the others).
Out: Entry rows, ranked; `render` gives the table as text.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

HEADLINE = (("oof acc", "oof", "accuracy"), ("oof loss", "oof", "log_loss"),
            ("test acc", "test", "accuracy"))


@dataclass
class Entry:
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    changed: dict[str, Any] = field(default_factory=dict)


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
    return Entry(name=name, params=flatten(_data(row, "params", "params.yaml")),
                 metrics={k: v for k, v in numbers.items() if isinstance(v, int | float)})


def entries(show: list[dict], *, metrics_file: str = "metrics/ensemble.json") -> list[Entry]:
    """Every workspace, baseline and experiment row of `dvc exp show --json`, each with the
    params that differ from its baseline's."""
    rows: list[Entry] = []
    workspace = None
    for row in show:
        if row.get("rev") == "workspace":
            workspace = _entry(row, "workspace", metrics_file)
            continue
        baseline = _entry(row, f"{row.get('name') or row['rev'][:7]} (baseline)", metrics_file)
        rows.append(baseline)
        for experiment in row.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                running = (experiment.get("executor") or {}).get("state") == "running"
                name = (rev.get("name") or rev["rev"][:7]) + (" (running)" if running else "")
                entry = _entry(rev, name, metrics_file)
                entry.changed = _changes(entry.params, baseline.params)
                rows.append(entry)
        if workspace is not None:
            workspace.changed = _changes(workspace.params, baseline.params)
    return ([workspace] if workspace else []) + rows


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
    head = f"{'#':>3}  {'experiment':<{name_width}}" + "".join(
        f"  {label:>8}" for label, _, _ in columns) + "  changed params"
    params_width = max(width - (len(head) - len("changed params")), 20)
    indent = " " * (width - params_width)
    lines = [head, "-" * min(width, len(head) + params_width - len("changed params"))]
    for rank, row in enumerate(rows, start=1):
        cells = f"{rank:>3}  {row.name[:name_width]:<{name_width}}" + "".join(
            f"  {_number(row.metrics.get(f'{group} {key}', row.metrics.get(label))):>8}"
            for label, group, key in columns)
        changed = ", ".join(f"{k}={v}" for k, v in row.changed.items()) or "-"
        wrapped = textwrap.wrap(changed, params_width) or ["-"]
        lines.append(f"{cells}  {wrapped[0]}")
        lines += [indent + more for more in wrapped[1:]]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
