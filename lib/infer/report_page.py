"""One run on one page: training curves and a self-contained HTML report, to open offline.

In: each trained fold's DVCLive folder (models/fold<k>/live: one TSV per metric under
plots/metrics, a row per epoch), the ensemble's detail and headline metrics, the per-class
table and the report's PNGs. Out:
- read_curves + curves_figure: loss and accuracy, training and validation, every fold
  overlaid (a colour per fold; training dashed, validation solid), as one PNG;
- leaderboard: this run's scores ranked by the competition's metric: the submitted blend, the
  runs it blends (with their fitted weights) and each fold's model;
- report_html: the headline, the leaderboard, the curves, the confusion matrices, the worst
  classes and the top losses on one HTML page. Every image is embedded (a data: URI) and the
  page has no script and no external URL, so it renders the same with no network (`dvc plots
  show` loads vega from a CDN and is blank offline).
"""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lib.common.figures import PALETTE, Panel, Series, panels_plot
from lib.common.fileio import write_text

# DVCLive's metric names (lib.train.loop.EpochResult) drawn, by panel; speed is left out.
CURVE_PANELS = (
    ("loss", "cross-entropy", (("train_loss", True), ("val_loss", False))),
    ("accuracy", "accuracy", (("train_acc", True), ("val_acc", False))),
)

Curves = dict[str, tuple[list[float], list[float]]]  # metric -> (epochs, values)


def read_curves(live_dir: Path) -> Curves:
    """Every metric DVCLive wrote under live_dir/plots/metrics, by epoch (DVCLive's step + 1);
    empty when the folder is missing (a fold not trained yet)."""
    curves: Curves = {}
    folder = live_dir / "plots" / "metrics"
    for tsv in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        with open(tsv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows and tsv.stem in rows[0] and "step" in rows[0]:
            curves[tsv.stem] = (
                [int(r["step"]) + 1 for r in rows],
                [float(r[tsv.stem]) for r in rows],
            )
    return curves


def curves_figure(curves: Mapping[int, Curves], path: Path) -> None:
    """Loss and accuracy panels, each fold in its colour, training dashed, validation solid."""
    panels = []
    for title, y_label, metrics in CURVE_PANELS:
        series = [
            Series(
                f"fold {fold} {name}",
                *curves[fold][name],
                colour=PALETTE[i % len(PALETTE)],
                dashed=dashed,
            )
            for i, fold in enumerate(curves)
            for name, dashed in metrics
            if name in curves[fold]
        ]
        panels.append(Panel(f"{title} by epoch", "epoch", y_label, series))
    legend = [(f"fold {fold}", PALETTE[i % len(PALETTE)], False) for i, fold in enumerate(curves)]
    legend += [("training (augmented batches)", "black", True), ("validation", "black", False)]
    panels_plot(panels, path, cols=2, legend=legend)


@dataclass
class Row:
    name: str
    scores: dict  # lib.infer.scoring.score's numbers
    weight: float | None = None


def leaderboard(
    detail: Mapping, *, prior_correction: bool, by_log_loss: bool, this_run: str = "predictions"
) -> list[Row]:
    """The blend as submitted, the runs it blends and this run's folds, best first by the
    competition's metric (log loss for proba, else accuracy)."""
    weights = (detail.get("weights") or {}).get("weights") or {}
    rows = [
        Row(
            "blend (submitted)"
            if len(detail.get("runs", {})) > 1
            else "this run: folds ensembled (submitted)",
            dict(detail["oof"]),
        )
    ]
    for name, scores in (detail.get("runs") or {}).items():
        rows.append(Row("this run" if name == this_run else name, dict(scores), weights.get(name)))
    rows += [
        Row(f"fold {key[4:]} model", dict(scores))
        for key, scores in detail.items()
        if key.startswith("fold") and key[4:].isdigit()
    ]
    accuracy = "accuracy_prior" if prior_correction else "accuracy"
    loss = "log_loss_prior_clipped" if prior_correction else "log_loss_clipped"
    for row in rows:
        row.scores = {
            "accuracy": row.scores.get(accuracy),
            "top3": row.scores.get("top3_accuracy"),
            "log_loss": row.scores.get(loss),
        }
    if by_log_loss:
        return sorted(rows, key=lambda r: _missing_last(r.scores["log_loss"], 1))
    return sorted(rows, key=lambda r: _missing_last(r.scores["accuracy"], -1))


def _missing_last(value: float | None, sign: int) -> tuple[bool, float]:
    ok = value is not None and math.isfinite(value)
    return not ok, sign * value if ok else 0.0


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _number(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


STYLE = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 10px}
th{background:#f0f0f0}td.n{text-align:right;font-family:monospace}
.big{font-size:20px;margin:8px 0}.big b{font-size:26px}img{max-width:100%;border:1px solid #eee}
figure{margin:12px 0}figcaption{font-size:13px;color:#555}"""


def report_html(
    *,
    title: str,
    headline: Mapping,
    board: Sequence[Row],
    by_log_loss: bool,
    images: Mapping[str, Path],
    per_class: pd.DataFrame | None,
    notes: Sequence[str] = (),
) -> str:
    """The page. `images`: caption -> PNG (missing files are left out); `per_class`: the
    per-class table, worst first (its ten worst rows are shown)."""
    e = html.escape
    oof = headline.get("oof", {})
    big = [
        f"OOF accuracy <b>{_number(oof.get('accuracy'))}</b>",
        f"OOF log loss <b>{_number(oof.get('log_loss'))}</b>",
    ]
    if "test" in headline:
        big.append(f"test accuracy <b>{_number(headline['test'].get('accuracy'))}</b>")
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>",
        f"<p class='big'>{' &nbsp; '.join(big)}</p>",
        *[f"<p>{e(note)}</p>" for note in notes],
        "<h2>Leaderboard</h2>",
        f"<p>Ranked by OOF {'log loss' if by_log_loss else 'accuracy'}, the scores of what "
        "is submitted (clipped, prior-corrected when prior_correction is on). "
        "<code>make leaderboard</code> compares experiments.</p>",
        "<table><tr><th>#</th><th>model</th><th>OOF accuracy</th><th>top-3</th>"
        "<th>OOF log loss</th><th>weight</th></tr>",
    ]
    for rank, row in enumerate(board, start=1):
        weight = "" if row.weight is None else f"{row.weight:.3f}"
        parts.append(
            f"<tr><td class='n'>{rank}</td><td>{e(row.name)}</td>"
            f"<td class='n'>{_number(row.scores['accuracy'])}</td>"
            f"<td class='n'>{_number(row.scores['top3'])}</td>"
            f"<td class='n'>{_number(row.scores['log_loss'])}</td>"
            f"<td class='n'>{weight}</td></tr>"
        )
    parts.append("</table>")
    for caption, png in images.items():
        if png.is_file():
            parts.append(
                f"<h2>{e(caption)}</h2><figure><img alt='{e(caption)}' "
                f"src='{_data_uri(png)}'><figcaption>{e(png.name)}</figcaption>"
                "</figure>"
            )
    if per_class is not None and len(per_class):
        parts.append(
            "<h2>Worst classes (OOF)</h2><table><tr><th>class</th><th>images</th>"
            "<th>accuracy</th><th>top-3</th><th>mean p(true)</th>"
            "<th>most confused with</th></tr>"
        )
        for _, r in per_class.head(10).iterrows():
            parts.append(
                f"<tr><td>{e(str(r['name']))}</td><td class='n'>{int(r['images'])}</td>"
                f"<td class='n'>{_number(r['accuracy'])}</td>"
                f"<td class='n'>{_number(r['top3_accuracy'])}</td>"
                f"<td class='n'>{_number(r['mean_true_prob'])}</td>"
                f"<td>{e(str(r['most_confused_with']))}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_run_report(
    path: Path,
    *,
    curves_png: Path,
    live_dirs: Mapping[int, Path],
    title: str,
    headline: Mapping,
    detail: Mapping,
    prior_correction: bool,
    by_log_loss: bool,
    figures: Mapping[str, Path],
    per_class: pd.DataFrame | None,
) -> None:
    """Draw the folds' curves (live_dirs: fold -> its DVCLive folder) to curves_png, then
    write the page to `path`: the leaderboard, the curves and `figures` (caption -> PNG)."""
    curves_figure({fold: read_curves(live) for fold, live in live_dirs.items()}, curves_png)
    board = leaderboard(detail, prior_correction=prior_correction, by_log_loss=by_log_loss)
    notes = [
        f"Folds {', '.join(str(k) for k in live_dirs)}; curves from "
        "models/fold<k>/live; every figure is also a PNG beside this page."
    ]
    write_text(
        path,
        report_html(
            title=title,
            headline=headline,
            board=board,
            by_log_loss=by_log_loss,
            per_class=per_class,
            notes=notes,
            images={"Training curves": curves_png, **figures},
        ),
    )
