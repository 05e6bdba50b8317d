"""Data-parallel training over several processes: torchrun + torch.distributed (DDP).

In: the environment torchrun gives each process (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT) and the number of processes asked for (`gpus`). Out: a Dist (rank, local rank,
world size), the process group (NCCL on CUDA, gloo on the CPU), sums across processes, and the
command that starts N processes on this machine. Without torchrun's variables it is one plain
process: world 1, rank 0, no process group, nothing else changes.

On the CPU several processes are for testing only (gloo): each runs its own threads on the same
cores, so it is not faster.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lib.common.errors import UserError
from lib.train.device import pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The process that writes outputs and logs (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    return Dist(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world=int(os.environ.get("WORLD_SIZE", "1")),
    )


def torchrun_command(nproc: int, module: str, args: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run` (= torchrun, with this interpreter) starting `nproc`
    copies of `python -m module args` on this machine; --standalone picks a free port, so
    several runs can share a machine."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        module,
        *args,
    ]


def setup(gpus: int) -> tuple[Dist, torch.device]:
    """Join the process group when torchrun started `gpus` > 1 processes; this process's Dist
    and device (cuda:<local rank> on CUDA)."""
    env = from_env()
    if env.world != gpus:
        raise UserError(
            f"gpus = {gpus} but this process is one of {env.world}: start the stage "
            f"with `python -m stages.launch stages.train --fold <k>` (as dvc.yaml "
            f"does), which runs torchrun when gpus > 1"
        )
    cuda = torch.cuda.is_available()
    if cuda and gpus > torch.cuda.device_count():
        raise UserError(
            f"gpus = {gpus} is not allowed: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    device = pick_device(env.local_rank if env.enabled else None)
    if not env.enabled:
        return env, device
    if cuda:
        torch.cuda.set_device(env.local_rank)
    elif env.main:
        log.warning("no CUDA device: %d CPU processes with gloo (a test set-up, not faster)", gpus)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return env, device


def teardown(env: Dist) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: Sequence[float], device: torch.device, env: Dist) -> list[float]:
    """Each value summed over the processes (as is without DDP)."""
    if not env.enabled:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()
