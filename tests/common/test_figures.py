import numpy as np
from PIL import Image

from lib.common.figures import (
    Mark,
    Panel,
    Series,
    heatmap,
    image_grid,
    line_plot,
    panels_plot,
    wrap,
)


def colours(path) -> set[tuple[int, int, int]]:
    return {tuple(c) for c in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def test_line_plot_writes_a_png_with_its_marks(tmp_path):
    path = tmp_path / "plot.png"
    line_plot(
        [1e-4, 1e-3, 1e-2],
        [2.0, 1.0, float("nan")],
        path,
        title="t",
        x_label="lr",
        y_label="loss",
        log_x=True,
        mark_x=1e-3,
        marks=[Mark(3e-3, "current", colour="#2ca02c")],
        shade=(1e-4, 1e-3),
    )
    assert Image.open(path).size == (640, 420)
    found = colours(path)
    assert (255, 0, 0) in found and (44, 160, 44) in found  # both marks drawn
    assert (232, 232, 232) in found  # the shaded range


def test_panels_overlay_series_in_their_colours_under_one_legend(tmp_path):
    path = tmp_path / "curves.png"
    panels = [
        Panel(
            "loss",
            "epoch",
            "loss",
            [
                Series("a", [1, 2, 3], [2.0, 1.5, 1.2], "#ff7f0e"),
                Series("b", [1, 2, 3], [2.1, 1.8, 1.7], "#9467bd", dashed=True),
            ],
        ),
        Panel("empty", "epoch", "acc", []),
    ]
    panels_plot(panels, path, panel_size=(300, 200), legend=[("a", "#ff7f0e", False)])
    assert Image.open(path).size == (600, 228)
    assert {(255, 127, 14), (148, 103, 189)} <= colours(path)


def test_heatmap_shades_by_value_and_outlines_the_diagonal(tmp_path):
    path = tmp_path / "heat.png"
    shade = np.array([[1.0, 0.0], [0.25, 0.75]])
    heatmap(
        shade,
        path,
        row_labels=["Ankle boot", "Sneaker"],
        col_labels=["Ankle boot", "Sneaker"],
        texts=[["4", ""], ["1", "3"]],
        title="t",
        x_label="predicted",
        y_label="true",
    )
    found = colours(path)
    assert (8, 48, 107) in found  # a full row share: the darkest blue
    assert (255, 255, 255) in found


def test_image_grid_places_every_image_and_labels_rows(tmp_path):
    images = [np.full((10, 20, 3), v, np.uint8) for v in (0, 255, 128)]
    image_grid(images, ["a", "b", "c"], tmp_path / "grid.png", cols=2, cell=40)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * (40 + 13 + 4), 80, 3)
    assert grid[20, 60].tolist() == [255, 255, 255] and grid[20, 20].tolist() == [0, 0, 0]
    image_grid(
        images,
        ["a", "b", "c"],
        tmp_path / "rows.png",
        cols=2,
        cell=40,
        row_labels=["Ankle boot", "T-shirt/top"],
    )
    labelled = np.asarray(Image.open(tmp_path / "rows.png"))
    assert labelled.shape[1] > 80 and (labelled[:, : labelled.shape[1] - 80] < 128).any()


def test_captions_wrap_to_the_cell_instead_of_being_cut():
    text = "true: Ankle boot (0.03) and a long tail of words"
    lines = wrap(text, 100, 11)
    assert len(lines) >= 2 and " ".join(lines) == text
