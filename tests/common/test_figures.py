import numpy as np
from PIL import Image

from lib.common.figures import image_grid, line_plot


def test_line_plot_writes_a_png(tmp_path):
    path = tmp_path / "plot.png"
    line_plot([1e-4, 1e-3, 1e-2], [2.0, 1.0, float("nan")], path, title="t", x_label="lr",
              y_label="loss", log_x=True, mark_x=1e-3)
    assert Image.open(path).size == (640, 420)


def test_image_grid_places_every_image(tmp_path):
    images = [np.full((10, 20, 3), v, np.uint8) for v in (0, 255, 128)]
    image_grid(images, ["a", "b", "c"], tmp_path / "grid.png", cols=2, cell=40)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * (40 + 14), 80, 3)
    assert grid[20, 60].tolist() == [255, 255, 255] and grid[20, 20].tolist() == [0, 0, 0]
