"""Speed settings on the CPU: AMP dtypes, the fp16 grad scaler, channels_last, loader workers,
inference batches. The CUDA paths run the same code with another device type."""

import math

import pytest
import timm
import torch

from lib.common.errors import UserError
from lib.common.images import list_images
from lib.train.data import ImageDataset, build_transforms, resolve_workers
from lib.train.device import (
    amp_dtype,
    autocast,
    grad_scaler,
    inference_batch_size,
    inference_loader,
    prepare_model,
    to_device,
)
from lib.train.loop import fit
from tests.conftest import train_config
from tests.train.test_loop import loaders

CPU = torch.device("cpu")


def test_amp_modes_on_the_cpu():
    assert amp_dtype(CPU, "auto") is None  # fp32: CPU results stay what the tests pin
    assert amp_dtype(CPU, "off") is None
    assert amp_dtype(CPU, "bf16") is torch.bfloat16
    assert amp_dtype(CPU, "fp16") is torch.float16
    with pytest.raises(UserError, match="amp = 'fp8'"):
        amp_dtype(CPU, "fp8")
    with autocast(CPU, torch.bfloat16):
        assert torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype is torch.bfloat16
    with autocast(CPU):  # "auto": fp32 on the CPU
        assert torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype is torch.float32


def test_grad_scaler_only_for_fp16():
    assert grad_scaler(CPU, torch.float16).is_enabled()
    assert not grad_scaler(CPU, torch.bfloat16).is_enabled()
    assert not grad_scaler(CPU, None).is_enabled()


def test_channels_last_model_and_batches():
    model = prepare_model(timm.create_model("resnet10t", num_classes=3), CPU, channels_last=True)
    assert model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    batch = to_device(torch.zeros(2, 3, 8, 8), CPU, channels_last=True)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert to_device(torch.zeros(2, 3, 8, 8), CPU).is_contiguous(
        memory_format=torch.channels_last
    )  # the CPU default: NHWC
    assert to_device(torch.zeros(2, 3, 8, 8), CPU, channels_last=False).is_contiguous()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_one_epoch_with_amp_and_channels_last(image_tree, amp):
    train, val = loaders(image_tree)
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=3)
    result = fit(
        model,
        train_loader=train,
        val_loader=val,
        device=CPU,
        fold=0,
        num_classes=3,
        config=train_config(epochs=1, lr=0.01, amp=amp, channels_last=True),
    )
    epoch = result.history[0]
    assert math.isfinite(epoch.train_loss) and math.isfinite(epoch.val_loss)
    assert all(v.dtype != torch.float16 for v in result.state_dict.values())  # weights fp32


def test_workers_auto_is_zero_on_the_cpu_and_shares_cores_on_cuda(monkeypatch):
    assert resolve_workers(3) == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_workers("auto") == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("lib.train.data.worker_count", lambda: 16)
    assert resolve_workers("auto") == 15
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 GPU processes share the 16 cores
    assert resolve_workers("auto") == 3


def test_inference_loader_batches(image_tree):
    assert inference_batch_size(64, CPU) == 64
    assert inference_batch_size(64, torch.device("cuda")) == 256
    transform = build_transforms(img_size=16, mean=[0.5] * 3, std=[0.5] * 3, train=False)
    dataset = ImageDataset(list_images(image_tree / "test"), None, transform)
    loader = inference_loader(dataset, batch_size=3, device=CPU, workers=0)
    assert [len(targets) for _, targets in loader] == [3, 1]  # in order, all of them
