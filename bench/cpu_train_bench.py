"""Benchmark the memory format on the CPU: NCHW against NHWC (channels_last), in one run.

For each architecture and image size: training steps (lib.train.loop.train_step: forward,
backward, AdamW, params.yaml's settings) and inference (no gradients) in images/s, NCHW then
NHWC on the same random batch, and the ratio NHWC / NCHW: the evidence for
lib.train.device.CHANNELS_LAST_DEVICES.

    .venv/bin/python bench/cpu_train_bench.py [--archs tf_efficientnet_lite0,resnet18] \\
        [--sizes 48,64] [--batch-size 64] [--steps 6]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib.common.params import read_params_file  # noqa: E402
from lib.train.device import grad_scaler, prepare_model, to_device  # noqa: E402
from lib.train.loop import TrainConfig, train_step  # noqa: E402
from lib.train.model import create_model  # noqa: E402

CPU = torch.device("cpu")
CLASSES = 10
WARMUP_STEPS = 2  # oneDNN picks its kernels on the first calls


def images_per_s(
    arch: str, size: int, *, batch_size: int, steps: int, channels_last: bool, train: bool
) -> float:
    torch.manual_seed(0)
    config = TrainConfig.from_params(
        read_params_file(ROOT / "params.yaml"), channels_last=channels_last
    )
    model = prepare_model(
        create_model(arch, num_classes=CLASSES, pretrained="none"), CPU, channels_last=channels_last
    )
    images = torch.randn(batch_size, 3, size, size)
    targets = torch.randint(0, CLASSES, (batch_size,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train(train)
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            started = time.perf_counter()
        if train:
            train_step(
                model,
                images,
                targets,
                optimizer=optimizer,
                scaler=grad_scaler(CPU, None),
                dtype=None,
                config=config,
                num_classes=CLASSES,
                device=CPU,
                class_weights=None,
            )
        else:
            with torch.inference_mode():
                model(to_device(images, CPU, channels_last=channels_last))
    return batch_size * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="tf_efficientnet_lite0,resnet18")
    parser.add_argument("--sizes", default="48,64")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; images/s")
    print(f"{'arch':<24}{'px':>4}  {'mode':<6}{'NCHW':>8}{'NHWC':>8}{'NHWC/NCHW':>11}")
    for arch in args.archs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for train in (True, False):
                nchw, nhwc = (
                    images_per_s(
                        arch,
                        size,
                        batch_size=args.batch_size,
                        steps=args.steps,
                        channels_last=cl,
                        train=train,
                    )
                    for cl in (False, True)
                )
                print(
                    f"{arch:<24}{size:>4}  {'train' if train else 'infer':<6}"
                    f"{nchw:>8.0f}{nhwc:>8.0f}{nhwc / nchw:>10.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
