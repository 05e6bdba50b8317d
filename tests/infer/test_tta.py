import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lib.infer.tta import load_size, predict_probs, tta_views


class LeftRight(nn.Module):
    """Logits that depend on where the bright pixels are: left half vs right half."""

    def __init__(self):
        super().__init__()
        self.head = nn.Identity()
        self.head.out_features = 2

    def get_classifier(self):
        return self.head

    def forward(self, x):
        half = x.shape[-1] // 2
        return torch.stack([x[..., :half].sum((1, 2, 3)), x[..., half:].sum((1, 2, 3))], dim=1)


def loader_of(images):
    return DataLoader(TensorDataset(images, torch.zeros(len(images))), batch_size=2)


def pattern(size: int) -> torch.Tensor:
    """A 1x1 image whose pixel (r, c) holds 100 r + c: every crop and flip is recognisable."""
    rows = torch.arange(size).view(size, 1) * 100
    return (rows + torch.arange(size).view(1, size)).float().view(1, 1, size, size)


def corner(view_output: torch.Tensor) -> tuple[int, int]:
    """(row, column) of the source pixel now at the top-left of the view."""
    value = int(view_output[0, 0, 0, 0])
    return value // 100, value % 100


def test_view_counts_per_level():
    counts = {tta: len(tta_views(tta, img_size=8)) for tta in ("none", "flip", "flip5", "flip6")}
    assert counts == {"none": 1, "flip": 2, "flip5": 10, "flip6": 12}
    assert len(tta_views("flip6", img_size=8, scales=[1.0, 1.5])) == 24


def test_flip_view_mirrors_the_last_axis():
    (_, plain), (name, mirrored) = tta_views("flip", img_size=6)
    x = pattern(6)
    assert torch.equal(plain(x), x)
    assert name == "full+flip"
    assert mirrored(x)[0, 0, 2].tolist() == [205, 204, 203, 202, 201, 200]


def test_crop_levels_take_the_centre_and_four_corners_and_their_mirrors():
    # img_size 8 with crop 0.8: the loader gives 10 x 10 images, crops are 8 x 8.
    assert load_size(8, tta="flip5", crop=0.8) == 10
    assert load_size(8, tta="flip", crop=0.8) == 8
    x = pattern(10)
    views = dict(tta_views("flip5", img_size=8, crop=0.8))
    expected = {
        "centre": (1, 1),
        "top-left": (0, 0),
        "top-right": (0, 2),
        "bottom-left": (2, 0),
        "bottom-right": (2, 2),
    }
    for name, (row, col) in expected.items():
        out = views[name](x)
        assert out.shape == (1, 1, 8, 8)
        assert corner(out) == (row, col), name
        assert torch.equal(out, x[..., row : row + 8, col : col + 8])
        mirrored = views[f"{name}+flip"](x)
        assert torch.equal(mirrored, torch.flip(out, dims=[-1]))
        assert corner(mirrored) == (row, col + 7)  # the crop's right edge, now on the left


def test_flip6_adds_the_full_image_resized_and_its_mirror():
    x = pattern(10)
    views = dict(tta_views("flip6", img_size=5, crop=0.5))
    assert set(views) == {
        "full",
        "full+flip",
        "centre",
        "centre+flip",
        "top-left",
        "top-left+flip",
        "top-right",
        "top-right+flip",
        "bottom-left",
        "bottom-left+flip",
        "bottom-right",
        "bottom-right+flip",
    }
    full = views["full"](x)
    assert full.shape == (1, 1, 5, 5)
    # Halving a linear ramp keeps it linear away from the border: (r, c) -> (2r + .5, 2c + .5)
    np.testing.assert_allclose(full[0, 0, 1, 1:4].numpy(), [252.5, 254.5, 256.5], atol=1e-3)
    assert torch.equal(views["full+flip"](x), torch.flip(full, dims=[-1]))


def test_multi_scale_resizes_every_view():
    views = dict(tta_views("flip", img_size=8, scales=[1.0, 1.5]))
    assert set(views) == {"full", "full+flip", "full@1.5", "full+flip@1.5"}
    assert views["full@1.5"](pattern(8)).shape == (1, 1, 12, 12)


def test_flip_merges_the_two_softmaxes_by_hand():
    image = torch.zeros(1, 1, 2, 4)
    image[..., :2] = 1.0  # bright left half: logits (4, 0); mirrored (0, 4)
    model, cpu = LeftRight(), torch.device("cpu")
    none = predict_probs(model, loader_of(image), device=cpu, views=tta_views("none", img_size=4))
    flip = predict_probs(model, loader_of(image), device=cpu, views=tta_views("flip", img_size=4))
    left = torch.softmax(torch.tensor([4.0, 0.0]), 0).numpy()
    np.testing.assert_allclose(none[0], left, rtol=1e-6)
    np.testing.assert_allclose(flip[0], [0.5, 0.5], rtol=1e-6)
    assert flip.dtype == np.float32
    # Three bright pixels, two on the left: logits (2, 1), mirrored (1, 2).
    image = torch.zeros(1, 1, 1, 4)
    image[..., [0, 1, 3]] = 1.0
    geo = predict_probs(
        model, loader_of(image), device=cpu, views=tta_views("flip", img_size=4), merge="geomean"
    )
    s = torch.softmax(torch.tensor([2.0, 1.0]), 0).numpy()
    g = np.sqrt(s * s[::-1])  # symmetric views: the geometric mean is (0.5, 0.5) too
    np.testing.assert_allclose(geo[0], g / g.sum(), rtol=1e-6)


def test_geometric_mean_differs_from_the_mean_when_views_disagree():
    class Fixed(LeftRight):
        def forward(self, x):  # view 1 (as is): logits (3, 0, 0); mirrored: (0, 0, 3)
            flipped = x[0, 0, 0, 0] < x[0, 0, 0, -1]
            row = torch.tensor([0.0, 0.0, 3.0]) if flipped else torch.tensor([3.0, 0.0, 0.0])
            return row.repeat(len(x), 1)

    model = Fixed()
    model.head.out_features = 3
    image = torch.zeros(1, 1, 1, 2)
    image[..., 0] = 1.0
    views = tta_views("flip", img_size=2)
    mean = predict_probs(model, loader_of(image), device=torch.device("cpu"), views=views)
    geo = predict_probs(
        model, loader_of(image), device=torch.device("cpu"), views=views, merge="geomean"
    )
    s = torch.softmax(torch.tensor([3.0, 0.0, 0.0]), 0).numpy()
    np.testing.assert_allclose(mean[0], (s + s[::-1]) / 2, rtol=1e-6)
    g = np.sqrt(s * s[::-1])
    np.testing.assert_allclose(geo[0], g / g.sum(), rtol=1e-5)
    assert geo[0, 1] > mean[0, 1]  # the class neither view rules out gains


def test_empty_loader_gives_an_empty_array():
    out = predict_probs(
        LeftRight(),
        loader_of(torch.zeros(0, 1, 2, 4)),
        device=torch.device("cpu"),
        views=tta_views("flip", img_size=4),
    )
    assert out.shape == (0, 2)


def test_unknown_level_or_merge_is_refused():
    with pytest.raises(ValueError, match="flip7"):
        tta_views("flip7", img_size=8)
    with pytest.raises(ValueError, match="median"):
        predict_probs(
            LeftRight(),
            loader_of(torch.zeros(1, 1, 2, 4)),
            device=torch.device("cpu"),
            views=tta_views("none", img_size=4),
            merge="median",
        )
