"""Data-parallel training over several processes with torch.distributed (DDP), launched by torchrun.

    torchrun --nproc-per-node=2 -m cnnlab train ...                       # 2 processes, one machine
    torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend c10d \\
             --rdzv-endpoint=HOST:29500 -m cnnlab train ...                # 2 machines, 4 each

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE; without them everything here is
a no-op and training runs in one process. The backend is NCCL on CUDA and gloo on the CPU. Each
process (rank) trains on its own shard of every epoch's shuffle, so ``--batch-size`` is per rank
and the global batch is that times the number of processes. Losses and hit counts are summed
across ranks; rank 0 alone prints, checkpoints and writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        """The process that prints and writes files."""
        return self.rank == 0


SINGLE = World()


def join(device_type: str) -> World:
    """Join the process group torchrun describes in the environment (one process: :data:`SINGLE`)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def is_first_rank() -> bool:
    """Whether this process is rank 0 of its torchrun launch (or runs alone), known before joining."""
    return int(os.environ.get("RANK", "0")) == 0


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def cpu_threads(world: World) -> int | None:
    """Threads per process: the machine's cores shared among the processes on it (None: one process,
    let cnnlab.training.system pick from the cores other trainings leave)."""
    return max(1, (os.cpu_count() or 1) // world.local_size) if world.size > 1 else None


def device_for(device: torch.device, world: World) -> torch.device:
    """Each rank on a machine gets its own GPU."""
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def shard(order: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's equal share of an epoch's shuffled indices (the remainder is left out, so every
    rank takes the same number of steps, as DDP needs)."""
    if world.size == 1:
        return order
    per_rank = len(order) // world.size
    return order[world.rank * per_rank : (world.rank + 1) * per_rank]


def total(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """``tensor`` summed over all ranks (in place)."""
    if world.size > 1:
        dist.all_reduce(tensor)
    return tensor


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """The model that training steps call: DDP (averages gradients across ranks) or the model itself."""
    if world.size == 1:
        return model
    on_gpu = next(model.parameters()).device.type == "cuda"
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[world.local_rank] if on_gpu else None)


def gather(value: Any, world: World) -> list[Any]:
    """Every rank's ``value``, in rank order (for the random generators' states in a checkpoint)."""
    if world.size == 1:
        return [value]
    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values
