import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lib.tta import TTA_VIEWS, predict_probs


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


def test_flip_view_mirrors_the_last_axis():
    x = torch.arange(6.0).reshape(1, 1, 1, 6)
    plain, mirrored = (view(x) for view in TTA_VIEWS["flip"])
    assert torch.equal(plain, x)
    assert mirrored.flatten().tolist() == [5, 4, 3, 2, 1, 0]


def test_flip_tta_is_the_mean_of_the_two_softmaxes():
    image = torch.zeros(1, 1, 2, 4)
    image[..., :2] = 1.0  # bright left half: logits (4, 0); mirrored (0, 4)
    none = predict_probs(LeftRight(), loader_of(image), device=torch.device("cpu"), tta="none")
    flip = predict_probs(LeftRight(), loader_of(image), device=torch.device("cpu"), tta="flip")
    left = torch.softmax(torch.tensor([4.0, 0.0]), 0).numpy()
    np.testing.assert_allclose(none[0], left, rtol=1e-6)
    np.testing.assert_allclose(flip[0], [0.5, 0.5], rtol=1e-6)
    assert flip.dtype == np.float32


def test_empty_loader_gives_an_empty_array():
    out = predict_probs(LeftRight(), loader_of(torch.zeros(0, 1, 2, 4)),
                        device=torch.device("cpu"), tta="flip")
    assert out.shape == (0, 2)
