"""The run's report: DVCLive curves read back, the leaderboard, and an HTML page that opens
offline (every image embedded, no external URL, no script), rendered by a real Chromium."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from dvclive import Live
from PIL import Image

from lib.infer.report import confusion_figures, per_class_table
from lib.infer.report_page import leaderboard, read_curves, write_run_report

DETAIL = {
    "fold0": {
        "accuracy": 0.85,
        "accuracy_prior": 0.85,
        "log_loss_clipped": 0.51,
        "log_loss_prior_clipped": 0.5,
        "top3_accuracy": 0.98,
    },
    "fold1": {
        "accuracy": 0.8352,
        "accuracy_prior": 0.84,
        "log_loss_clipped": 0.52,
        "log_loss_prior_clipped": 0.52,
        "top3_accuracy": 0.984,
    },
    "oof": {
        "accuracy": 0.8438,
        "accuracy_prior": 0.845,
        "log_loss_clipped": 0.5156,
        "log_loss_prior_clipped": 0.514,
        "top3_accuracy": 0.9823,
    },
}
HEADLINE = {"oof": {"accuracy": 0.8438, "log_loss": 0.5156}, "test": {"accuracy": 0.846}}
NAMES = ["T-shirt/top", "Trouser", "Ankle boot"]


def log_fold(live_dir: Path, epochs: int, offset: float) -> None:
    """What stages.train logs, through DVCLive itself."""
    with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        for epoch in range(epochs):
            for name, value in {
                "train_loss": 2.0 - 0.3 * epoch + offset,
                "val_loss": 1.9 - 0.25 * epoch + offset,
                "train_acc": 0.5 + 0.1 * epoch,
                "val_acc": 0.55 + 0.1 * epoch,
                "images_per_s": 100.0,
                "seconds": 3.0,
                "lr": 1e-3,
            }.items():
                live.log_metric(name, value)
            live.next_step()


def test_curves_are_read_back_from_dvclive_by_epoch(tmp_path):
    log_fold(tmp_path / "live", epochs=3, offset=0.0)
    curves = read_curves(tmp_path / "live")
    assert curves["val_acc"] == ([1, 2, 3], pytest.approx([0.55, 0.65, 0.75]))
    assert {"train_loss", "val_loss", "train_acc"} <= curves.keys()
    assert read_curves(tmp_path / "missing") == {}


def test_the_leaderboard_ranks_by_the_competitions_metric():
    detail = DETAIL | {
        "runs": {"predictions": DETAIL["fold1"], "b0-64": DETAIL["fold0"]},
        "weights": {"weights": {"predictions": 0.3, "b0-64": 0.7}},
    }
    rows = leaderboard(detail, prior_correction=False, by_log_loss=False)
    assert [r.name for r in rows] == [
        "b0-64",
        "fold 0 model",
        "blend (submitted)",
        "this run",
        "fold 1 model",
    ]
    assert rows[0].weight == 0.7 and rows[3].weight == 0.3
    by_loss = leaderboard(DETAIL, prior_correction=True, by_log_loss=True)
    assert [r.name for r in by_loss][0] == "fold 0 model"
    assert by_loss[0].scores["log_loss"] == 0.5  # the prior-corrected score: it is submitted


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [
            (tag, name, value or "")
            for name, value in attrs
            if name in {"src", "href", "srcset", "data", "action", "poster"}
        ]


@pytest.fixture
def report(tmp_path) -> Path:
    """A report as the ensemble stage writes it, from real figures and DVCLive folders."""
    for fold in (0, 1):
        log_fold(tmp_path / f"fold{fold}" / "live", epochs=3, offset=0.1 * fold)
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]])
    columns = np.array([0, 0, 1, 2])
    counts = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    confusion_figures(
        counts,
        NAMES,
        counts_png=tmp_path / "counts.png",
        normalized_png=tmp_path / "normalized.png",
    )
    table = per_class_table(probs, columns, np.array([0, 1, 9]), dict(enumerate(NAMES[:2])))
    page = tmp_path / "report.html"
    write_run_report(
        page,
        curves_png=tmp_path / "curves.png",
        live_dirs={k: tmp_path / f"fold{k}" / "live" for k in (0, 1)},
        title="demo: workspace",
        headline=HEADLINE,
        detail=DETAIL,
        prior_correction=False,
        by_log_loss=False,
        per_class=table,
        figures={
            "Confusion matrix (OOF), counts": tmp_path / "counts.png",
            "Confusion, % of each true class": tmp_path / "normalized.png",
            "Top losses": tmp_path / "not drawn.png",
        },
    )
    return page


def test_the_report_needs_no_network_and_carries_the_runs_numbers(report):
    text = report.read_text()
    parser = Links()
    parser.feed(text)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    images = [value for tag, name, value in parser.urls if tag == "img" and name == "src"]
    assert len(images) == 3  # curves and both confusion matrices; a missing PNG left out
    assert [(tag, name) for tag, name, _ in parser.urls] == [("img", "src")] * 3
    for uri in images:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert (
        base64.b64decode(images[1].split(",", 1)[1]) == (report.parent / "counts.png").read_bytes()
    )
    assert not re.search(
        r"(https?:|ftp:|file:|//[a-z0-9])",
        text.replace(images[0], "").replace(images[1], "").replace(images[2], ""),
        re.IGNORECASE,
    )
    for number in ("0.8438", "0.5156", "0.8460", "0.8500", "0.8352", "0.9823"):
        assert number in text, number
    assert (
        text.index("fold 0 model")
        < text.index("this run: folds ensembled")
        < text.index("fold 1 model")
    )  # ranked by OOF accuracy
    assert "T-shirt/top" in text  # the worst classes table names them


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "screenshot.png"
    profile = tmp_path / "profile"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,2400",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            report.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2400, 1280)
    not_white = (pixels < 240).any(axis=2)
    assert not_white.mean() > 0.02, "blank page"
    # the embedded confusion matrix was decoded and drawn: its darkest blue is on the page
    assert (np.abs(pixels - [8, 48, 107]).sum(axis=2) < 12).sum() > 100
    # and so were the curves: the folds' colours
    assert (np.abs(pixels - [31, 119, 180]).sum(axis=2) < 12).sum() > 50
    assert (np.abs(pixels - [255, 127, 14]).sum(axis=2) < 12).sum() > 50
