import math

import numpy as np
from PIL import Image

from lib.infer.report import (
    confusion_counts,
    confusion_figures,
    confusion_frame,
    per_class_table,
    top_losses_grid,
    worst_mistakes,
)

CLASSES = np.array([3, 7, 9])  # label ids; rows of probs point at columns 0..2
NAMES = {3: "chair", 7: "lamp"}  # 9 has no name: shown as "9"
# rows: true column, then the probabilities of columns 0, 1, 2
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # true 0, right
        [0.2, 0.5, 0.3],  # true 0, wrong (lamp), 0.2 on the truth: 3rd of 3
        [0.1, 0.6, 0.3],  # true 1, right
        [0.1, 0.3, 0.6],  # true 1, wrong (9), 0.3 on the truth: 2nd of 3
        [0.5, 0.4, 0.1],  # true 2, wrong (chair), 0.1 on the truth: 2nd of 3 (tie broken by column)
    ]
)
COLUMNS = np.array([0, 0, 1, 1, 2])


def test_per_class_table_counts_each_class_worst_first():
    table = per_class_table(PROBS, COLUMNS, CLASSES, NAMES)
    assert table["label_id"].tolist() == [9, 3, 7]  # accuracy 0, then 0.5 and 0.5 by label
    rows = table.set_index("label_id")
    assert rows.loc[3, "name"] == "chair" and rows.loc[9, "name"] == "9"
    assert rows["images"].tolist() == [1, 2, 2]
    assert rows.loc[3, "accuracy"] == 0.5 and rows.loc[9, "accuracy"] == 0.0
    # top-3 of 3 classes: always a hit
    assert rows["top3_accuracy"].tolist() == [1.0, 1.0, 1.0]
    assert math.isclose(rows.loc[3, "mean_true_prob"], 0.45)
    assert rows.loc[3, "most_confused_with"] == "lamp"
    assert rows.loc[7, "most_confused_with"] == "9"
    assert rows.loc[9, "most_confused_with"] == "chair"


def test_per_class_table_top3_misses_with_more_classes():
    probs = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],  # true 0: last of 4, a miss
            [0.4, 0.3, 0.2, 0.1],
        ]
    )  # true 1: 2nd, a hit
    table = per_class_table(probs, np.array([0, 1]), np.array([0, 1, 2, 3]))
    rows = table.set_index("label_id")
    assert rows.loc[0, "top3_accuracy"] == 0.0 and rows.loc[1, "top3_accuracy"] == 1.0
    assert rows.loc[2, "images"] == 0 and math.isnan(rows.loc[2, "accuracy"])
    assert rows.loc[2, "most_confused_with"] == ""


def test_confusion_frame_names_actual_and_predicted():
    frame = confusion_frame(PROBS, COLUMNS, CLASSES, NAMES, image_ids=np.arange(10, 15))
    assert frame.columns.tolist() == ["image_id", "actual", "predicted"]
    assert frame["actual"].tolist() == ["chair", "chair", "lamp", "lamp", "9"]
    assert frame["predicted"].tolist() == ["chair", "lamp", "lamp", "9", "chair"]


def test_worst_mistakes_lowest_true_probability_first():
    assert worst_mistakes(PROBS, COLUMNS, k=10).tolist() == [4, 1, 3]
    assert worst_mistakes(PROBS, COLUMNS, k=2).tolist() == [4, 1]
    assert worst_mistakes(PROBS[[0, 2]], COLUMNS[[0, 2]], k=5).tolist() == []


def test_top_losses_grid_draws_the_mistakes(tmp_path):
    paths = []
    for row in range(len(PROBS)):
        path = tmp_path / f"{row}.png"
        Image.new("RGB", (16, 12), (row * 50, 0, 0)).save(path)
        paths.append(path)
    out = tmp_path / "grid.png"
    drawn = top_losses_grid(
        out,
        image_paths=paths,
        probs=PROBS,
        columns=COLUMNS,
        classes=CLASSES,
        names=NAMES,
        k=2,
        cols=2,
        image_ids=np.array(["a1", "b2", "c3", "d4", "e5"]),
    )
    assert drawn == 2
    grid = np.asarray(Image.open(out))
    assert grid.shape[1] == 2 * 128
    # the worst mistake (row 4) first, blown up into the first cell
    assert grid[40, 40].tolist() == [200, 0, 0] and grid[40, 168].tolist() == [50, 0, 0]


def test_confusion_counts_true_down_predicted_across():
    counts = confusion_counts(PROBS, COLUMNS)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 0]]


def test_confusion_figures_are_drawn_with_class_names(tmp_path):
    counts = confusion_counts(PROBS, COLUMNS)
    confusion_figures(
        counts,
        ["chair", "lamp", "9"],
        counts_png=tmp_path / "c.png",
        normalized_png=tmp_path / "n.png",
    )
    for name in ("c.png", "n.png"):
        pixels = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        # row "9" is all predicted as chair: a full row share, the darkest shade
        assert (pixels == [8, 48, 107]).all(axis=2).sum() > 100
