import pytest
import timm
import torch

from lib.common.errors import UserError
from lib.train.model import (
    OFFLINE_ARCH,
    create_model,
    offline_lite0_path,
    read_weights,
    rename_lite0_keys,
)


def test_offline_lite0_weights_load_strictly_into_timm():
    model = timm.create_model(OFFLINE_ARCH, pretrained=False)
    renamed = rename_lite0_keys(read_weights(offline_lite0_path()))
    model.load_state_dict(renamed, strict=True)  # every key and shape matches
    assert torch.equal(model.conv_stem.weight, renamed["conv_stem.weight"])


def test_offline_model_keeps_pretrained_backbone_and_new_head():
    model = create_model(OFFLINE_ARCH, num_classes=7, pretrained="offline")
    renamed = rename_lite0_keys(read_weights(offline_lite0_path()))
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, renamed["blocks.6.0.conv_pwl.weight"])
    assert model.get_classifier().out_features == 7
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_local_weights_file(tmp_path):
    source = timm.create_model("resnet10t", num_classes=5)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model = create_model("resnet10t", num_classes=3, pretrained=str(tmp_path / "w.pth"))
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
    assert model.get_classifier().out_features == 3


def test_weights_for_another_arch_are_rejected(tmp_path):
    torch.save(timm.create_model("resnet10t").state_dict(), tmp_path / "w.pth")
    with pytest.raises(UserError, match="do not fit"):
        create_model(OFFLINE_ARCH, num_classes=3, pretrained=str(tmp_path / "w.pth"))


def test_unknown_arch_suggests_close_matches():
    with pytest.raises(UserError, match="did you mean.*tf_efficientnet_lite0"):
        create_model("tf_efficientnet_lite", num_classes=3, pretrained="none")


def test_offline_only_for_lite0_and_missing_file():
    with pytest.raises(UserError, match="weights for tf_efficientnet_lite0 only"):
        create_model("resnet10t", num_classes=3, pretrained="offline")
    with pytest.raises(UserError, match="no such weights file"):
        create_model("resnet10t", num_classes=3, pretrained="missing.pth")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.pth", b"", "not a readable torch file (truncated, empty or another format: EOFError)"),
        ("w.pth", b"just some notes\n", "not a readable torch file"),
        ("w.pth", b"\x89PNG\r\n\x1a\n" + bytes(64), "not a readable torch file"),
        ("w.safetensors", b"{not safetensors}", "not a readable .safetensors file"),
    ],
)
def test_a_pretrained_file_that_is_not_weights_is_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError) as error:
        create_model("resnet10t", num_classes=3, pretrained=str(tmp_path / name))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(tmp_path / name) in str(error.value)


@pytest.mark.parametrize("content", [[torch.zeros(2)], torch.zeros(2), {"w": "text"}, {1: 2}])
def test_a_torch_file_without_a_state_dict_is_not_taken_for_weights(tmp_path, content):
    torch.save(content, tmp_path / "w.pt")
    with pytest.raises(
        UserError,
        match=r"w.pt': holds a \w+, not weights; expected a state "
        r"dict saved by torch.save",
    ):
        create_model("resnet10t", num_classes=3, pretrained=str(tmp_path / "w.pt"))


def test_hub_weights_without_network_are_one_line_naming_offline_choices(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fails as offline
    with pytest.raises(
        UserError,
        match=r"pretrained = 'hub': the weights of resnet10t could not "
        r"be fetched .* use pretrained: offline "
        r"\(tf_efficientnet_lite0 only\), the path of a "
        r"\.pth/\.safetensors weights file, or none",
    ) as error:
        create_model("resnet10t", num_classes=3, pretrained="hub")
    assert "\n" not in str(error.value)


def test_a_fixed_size_model_is_built_for_img_size_or_refused_naming_both(tmp_path):
    from lib.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    model = create_model("vit_tiny_patch16_224", num_classes=3, pretrained="none", img_size=32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    save_checkpoint(
        tmp_path / "m.pt",
        model=model,
        arch="vit_tiny_patch16_224",
        classes=[1, 2, 3],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        img_size=32,
        params={},
    )
    again = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"), tmp_path / "m.pt")
    assert torch.equal(again(torch.ones(1, 3, 32, 32)), model.eval()(torch.ones(1, 3, 32, 32)))
    with pytest.raises(
        UserError,
        match=r"arch = 'vit_tiny_patch16_224' is made for 224 px "
        r"images and cannot be built for img_size = 8 .*set "
        r"img_size: 224",
    ):
        create_model("vit_tiny_patch16_224", num_classes=3, pretrained="none", img_size=8)
