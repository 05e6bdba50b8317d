"""Benchmark one-GPU training: the compute ceiling against the real JPEG pipeline, and TTA.

For each architecture (resnet50 and tf_efficientnet_lite0 at 224 px by default), in one run:
  (a) synthetic: one random batch already on the device, trained on again and again: the
      compute ceiling (no decoding, no copies); the same lib.train.loop.train_step as training,
  (b) pipeline: JPEG files on disk -> lib.train.data (reduced-size decoding, random-resized crop,
      flip, normalise) in worker processes -> pinned memory -> the device -> train_step,
  (b)/(a): how much of the ceiling the pipeline keeps; on CUDA also the peak GPU memory and the
      mean GPU utilisation (nvidia-smi, sampled) while (b) runs,
  (c) TTA inference (flip: 2 views, lib.infer.tta) over the evaluation pipeline with the large
      inference batches of lib.train.device.inference_loader.
Then the loader alone, per core: one process decoding + augmenting at full size against
reduced-size JPEG decoding (PIL draft), the evidence for the decoding path.
Targets (one H100 and 16 cores): (b)/(a) >= 0.9 and resnet50 (b) >= 2,470 images/s
(NVIDIA's published single-A100 AMP figure).

    .venv/bin/python bench/gpu_bench.py                                   # a GPU box
    .venv/bin/python bench/gpu_bench.py --img-size 64 --batch-size 16 --steps 6 --warmup 2 \\
        --images 96                                                       # a CPU smoke run
    .venv/bin/python bench/gpu_bench.py --archs "" --batch-size 32 --steps 8  # loader only
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib.common.params import read_params_file  # noqa: E402
from lib.common.pools import process_pool, worker_count  # noqa: E402
from lib.infer.tta import predict_probs, tta_views  # noqa: E402
from lib.train.data import (  # noqa: E402
    ImageDataset,
    build_transforms,
    decode_size,
    make_loader,
    resolve_workers,
)
from lib.train.device import (  # noqa: E402
    amp_dtype,
    compile_model,
    configure_backends,
    grad_scaler,
    inference_loader,
    prepare_model,
)
from lib.train.loop import TrainConfig, train_step  # noqa: E402
from lib.train.model import create_model  # noqa: E402
from lib.train.optim import make_optimizer, parameter_groups  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "gpu_jpegs"
CLASSES = 128  # iMaterialist's
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_image(args: tuple[int, str]) -> None:
    """A photo-like JPEG (smooth shapes + sensor-like noise, quality 90) of 500-800 px, the
    size of the web images iMaterialist links to."""
    index, path = args
    rng = np.random.default_rng(index)
    width, height = (int(v) for v in rng.integers(500, 801, 2))
    y, x = np.ogrid[0:height, 0:width]
    base = np.stack(
        [np.sin(x / rng.uniform(20, 90) + c) * np.cos(y / rng.uniform(20, 90)) for c in range(3)],
        axis=-1,
    )
    pixels = 127 + 90 * base + rng.normal(0, 8, (height, width, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_images(count: int) -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = [CACHE / f"{i}.jpg" for i in range(count)]
    todo = [(i, str(p)) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        print(f"making {len(todo)} JPEGs in {CACHE}", file=sys.stderr)
        with process_pool() as pool:
            pool.map(make_image, todo, chunksize=16)
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GpuSampler:
    """Mean GPU utilisation (%) from nvidia-smi, sampled every 0.2 s in a thread."""

    def __init__(self, device: torch.device):
        self.enabled = device.type == "cuda" and shutil.which("nvidia-smi") is not None
        index = (
            (device.index if device.index is not None else torch.cuda.current_device())
            if self.enabled
            else 0
        )
        self.command = [
            "nvidia-smi",
            f"--id={index}",
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
        ]
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            done = subprocess.run(self.command, capture_output=True, text=True)
            if done.returncode == 0 and done.stdout.strip():
                self.samples.append(float(done.stdout.split()[0]))

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.enabled:
            self.thread.join()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def build(arch: str, device: torch.device, args) -> tuple:
    torch.manual_seed(0)
    model = prepare_model(create_model(arch, num_classes=CLASSES, pretrained="none"), device)
    optimizer = make_optimizer(parameter_groups(model, weight_decay=0.01), name="sgd", lr=0.01)
    trained = compile_model(model, args.compile)
    trained.train()
    dtype = amp_dtype(device, args.amp)
    return model, trained, optimizer, dtype, grad_scaler(device, dtype)


def train_rate(batches, trained, optimizer, dtype, scaler, device, warmup: int) -> float:
    """Images/s of train_step over `batches`, the first `warmup` not timed."""
    config = TrainConfig.from_params(read_params_file(ROOT / "params.yaml"), epochs=1, lr=0.01)
    seen, began = 0, None
    for i, (images, targets) in enumerate(batches):
        if i == warmup:
            sync(device)
            began, seen = time.perf_counter(), 0
        train_step(
            trained,
            images,
            targets,
            optimizer=optimizer,
            scaler=scaler,
            dtype=dtype,
            config=config,
            num_classes=CLASSES,
            device=device,
            class_weights=None,
        )
        seen += len(targets)
    sync(device)
    return seen / (time.perf_counter() - began)


def synthetic(arch, device, args) -> float:
    _, trained, optimizer, dtype, scaler = build(arch, device, args)
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, CLASSES, (args.batch_size,), device=device)
    batches = ((images, targets) for _ in range(args.warmup + args.steps))
    return train_rate(batches, trained, optimizer, dtype, scaler, device, args.warmup)


def train_dataset(paths: list[Path], count: int, args) -> ImageDataset:
    transform = build_transforms(
        img_size=args.img_size, mean=MEAN, std=STD, train=True, aug="light"
    )
    cycled = [paths[i % len(paths)] for i in range(count)]
    return ImageDataset(
        cycled,
        [i % CLASSES for i in range(count)],
        transform,
        decode_size(args.img_size, train=True, aug="light"),
    )


def pipeline(arch, device, paths, workers, args) -> tuple[float, float, float]:
    """(b): images/s, peak GPU memory (GiB) and mean GPU utilisation (%)."""
    _, trained, optimizer, dtype, scaler = build(arch, device, args)
    warmup = max(args.warmup, workers + 1)  # past the first round of every worker's batches
    dataset = train_dataset(paths, (warmup + args.steps) * args.batch_size, args)
    loader = make_loader(dataset, batch_size=args.batch_size, shuffle=True, workers=workers)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with GpuSampler(device) as gpu:
        rate = train_rate(loader, trained, optimizer, dtype, scaler, device, warmup)
    memory = (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    )
    return rate, memory, gpu.mean


def tta_rate(arch, device, paths, workers, args) -> float:
    """(c): images/s of flip TTA (2 views) over the evaluation pipeline."""
    model, _, _, _, _ = build(arch, device, args)
    transform = build_transforms(img_size=args.img_size, mean=MEAN, std=STD, train=False)
    count = max(len(paths), args.steps * args.batch_size)
    # as stages.predict loads them: JPEGs decoded at reduced size, as validation decodes them
    dataset = ImageDataset(
        [paths[i % len(paths)] for i in range(count)],
        None,
        transform,
        decode_size=decode_size(args.img_size, train=False),
    )
    loader = inference_loader(dataset, batch_size=args.batch_size, device=device, workers=workers)
    views = tta_views("flip", img_size=args.img_size)
    # Warm-up on one batch: cuDNN autotuning, compilation, worker start.
    predict_probs(model, [next(iter(loader))], device=device, views=views)
    sync(device)
    began = time.perf_counter()
    predict_probs(model, loader, device=device, views=views)
    sync(device)
    return count / (time.perf_counter() - began)


def loader_rate(paths, args, *, draft: bool, workers: int) -> float:
    """Images/s of the training loader alone (decode + augment + collate)."""
    steps = max(args.steps, 2 * workers + 2)
    dataset = train_dataset(paths, steps * args.batch_size, args)
    if not draft:
        dataset.decode_size = None
    loader = make_loader(
        dataset, batch_size=args.batch_size, shuffle=True, workers=workers, pin_memory=False
    )
    seen, began = 0, time.perf_counter()
    for i, (_, targets) in enumerate(loader):
        if i <= workers:  # timed from the end of the first round of batches
            began = time.perf_counter()
            continue
        seen += len(targets)
    return seen / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archs",
        default="resnet50,tf_efficientnet_lite0",
        help='comma-separated timm models; "" = the loader figures only',
    )
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--images", type=int, default=2048, help="distinct JPEGs (cycled)")
    parser.add_argument("--workers", default="auto", help='loader processes, or "auto"')
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    configure_backends(device)
    workers = resolve_workers(args.workers)
    paths = make_images(args.images)
    for path in paths:  # the page cache, as on a machine that has read the images once
        path.read_bytes()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(
        f"\n{device.type} ({gpu}), {worker_count()} cores, {workers} loader workers, "
        f"{args.img_size} px, batch {args.batch_size}, amp {amp_dtype(device, args.amp)}, "
        f"compile {args.compile}, {args.steps} timed steps, torch {torch.__version__}"
    )
    print(
        f"{'arch':24s} {'(a) synth':>10s} {'(b) JPEGs':>10s} {'(b)/(a)':>8s} "
        f"{'mem GiB':>8s} {'GPU %':>6s} {'(c) TTA':>9s}   (images/s)"
    )
    for arch in filter(None, args.archs.split(",")):  # --archs "": the loader only
        ceiling = synthetic(arch, device, args)
        real, memory, utilisation = pipeline(arch, device, paths, workers, args)
        tta = tta_rate(arch, device, paths, workers, args)
        print(
            f"{arch:24s} {ceiling:10.1f} {real:10.1f} {real / ceiling:8.2f} {memory:8.2f} "
            f"{utilisation:6.1f} {tta:9.1f}",
            flush=True,
        )

    print("\nloader alone (decode + augment + collate), images/s")
    loader_workers = workers or worker_count()
    for draft in (False, True):
        single = loader_rate(paths, args, draft=draft, workers=0)
        pooled = loader_rate(paths, args, draft=draft, workers=loader_workers)
        name = "reduced-size decode (draft)" if draft else "full-size decode"
        print(
            f"  {name:28s} 1 process: {single:8.1f}   {loader_workers} workers: "
            f"{pooled:8.1f} ({pooled / loader_workers:.1f} per core)"
        )
    if device.type == "cuda":
        print("targets: (b)/(a) >= 0.9; resnet50 (b) >= 2470 images/s")


if __name__ == "__main__":
    main()
