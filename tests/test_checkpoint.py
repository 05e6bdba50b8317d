import torch

from lib.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from lib.model import create_model


def test_checkpoint_carries_provenance_and_reloads_the_same_model(tmp_path):
    model = create_model("resnet10t", num_classes=3, pretrained="none").eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model=model, arch="resnet10t", classes=[4, 7, 9], mean=[0.1] * 3,
                    std=[0.2] * 3, img_size=32, params={"lr": 0.1, "arch": "resnet10t"})
    checkpoint = load_checkpoint(path)  # weights_only=True inside
    assert checkpoint["classes"] == [4, 7, 9] and checkpoint["img_size"] == 32
    assert checkpoint["params"]["lr"] == 0.1
    x = torch.randn(2, 3, 32, 32)
    reloaded = model_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), reloaded(x))
