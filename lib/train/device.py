"""Where the model runs and how fast: device, mixed precision, memory format, compilation.

In: the device (CUDA when present, else the CPU) and the speed knobs from params.yaml
(`amp`, `compile`). Out: a model moved to the device (NHWC on CUDA and the CPU, optionally
compiled), autocast contexts, a grad scaler (fp16 only), batch copies that overlap with compute,
and an inference loader sized for prediction (larger batches: no gradients to keep).

AMP (`amp`): `auto` is bf16 on a CUDA GPU that supports it (Ampere and later: no grad scaler
needed, same range as fp32), fp16 with a grad scaler on older GPUs, and off (fp32) on the CPU,
where autocast is slower than fp32 for convolutions and would change the CPU results that the
determinism tests pin. `bf16`, `fp16` and `off` force a choice (on the CPU too, for testing).
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lib.common.errors import UserError
from lib.train.data import make_loader

log = logging.getLogger(__name__)
AMP_MODES = ("auto", "bf16", "fp16", "off")
# Inference keeps no activations for a backward pass: about 3x the training batch fits in the
# same memory; larger batches keep the GPU busy between the loader's batches.
INFERENCE_BATCH_MULT = 4


def pick_device(local_rank: int | None = None) -> torch.device:
    """CUDA (device `local_rank` under torchrun) when present, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")


def configure_backends(device: torch.device) -> None:
    """cuDNN picks the fastest convolution algorithms for the (fixed) input shape; fp32 matmuls
    may use TF32 tensor cores (https://pytorch.org/docs/stable/notes/cuda.html#tf32-on-ampere)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `amp` on `device`; None = fp32 (no autocast)."""
    if amp not in AMP_MODES:
        raise UserError(f"amp = {amp!r} is not allowed: expected one of {', '.join(AMP_MODES)}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(
    device: torch.device, dtype: torch.dtype | None | str = "auto"
) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (or what `amp_dtype(device, "auto")` picks); a no-op for None."""
    if isinstance(dtype, str):
        dtype = amp_dtype(device, dtype)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for fp16 (whose small range underflows gradients); with bf16
    or fp32 it is a pass-through."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


# NHWC by default: tensor cores want it, and on the CPU oneDNN runs the EfficientNets' depthwise
# convolutions much faster in it (plain ResNets lose a little); bench/cpu_train_bench.py.
CHANNELS_LAST_DEVICES = ("cuda", "cpu")


def uses_channels_last(device: torch.device, channels_last: bool | None) -> bool:
    """`channels_last` when given, else whether the device type is in CHANNELS_LAST_DEVICES."""
    return channels_last if channels_last is not None else device.type in CHANNELS_LAST_DEVICES


def prepare_model(
    model: nn.Module, device: torch.device, *, channels_last: bool | None = None
) -> nn.Module:
    """Move the model to `device`, as NHWC where `uses_channels_last` says so."""
    model = model.to(device)
    if uses_channels_last(device, channels_last):
        model = model.to(memory_format=torch.channels_last)
    return model


def compile_model(model: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile (kernel fusion; the first steps are slow while it compiles), or as is."""
    if not enabled:
        return model
    log.info("compiling the model with torch.compile (the first batches are slow)")
    return torch.compile(model)


def to_device(
    batch: torch.Tensor, device: torch.device, *, channels_last: bool | None = None
) -> torch.Tensor:
    """Copy a batch to `device` without waiting (the loader pins memory on CUDA), as NHWC when
    the model is (see `uses_channels_last`)."""
    if uses_channels_last(device, channels_last):
        return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
    return batch.to(device, non_blocking=True)


def inference_batch_size(batch_size: int, device: torch.device) -> int:
    """The prediction batch: `INFERENCE_BATCH_MULT` x the training batch on CUDA."""
    return batch_size * INFERENCE_BATCH_MULT if device.type == "cuda" else batch_size


def inference_loader(
    dataset: Dataset, *, batch_size: int, device: torch.device, workers: int | str = "auto"
) -> DataLoader:
    """A loader for prediction: in order, large batches on CUDA, pinned memory, worker
    processes (`workers`: a number or "auto", see lib.train.data.resolve_workers)."""
    return make_loader(
        dataset, batch_size=inference_batch_size(batch_size, device), shuffle=False, workers=workers
    )
