"""Multi-process training under ``torchrun``: the process group, the rank and the few collectives training needs.

``torchrun --nproc_per_node N -m hrnet_backbones train ...`` starts N processes and tells each who it is through
the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); several machines join
through torchrun's own rendezvous (``--nnodes``, ``--rdzv-endpoint``), which sets the same variables. Without them
the process is a world of one and nothing here talks to anyone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
    "init_distributed_mode",
]


@dataclass(frozen=True)
class DistInfo:
    """Who this process is: ``rank`` of ``world_size`` (``local_rank`` on its machine) and the device it uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, shows progress and writes files."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={value!r} is not an integer (set by torchrun)"
        ) from None


def init_distributed_mode(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment, or return a world of one.

    The backend is NCCL on CUDA and gloo on the CPU. ``device`` defaults to ``cuda:LOCAL_RANK`` when CUDA is
    available, else the CPU; a CUDA device is made the current one so collectives and autocast use it. Calling it
    again once the group exists returns the same answer.
    """
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    world = world or 1
    if device is None:
        device = f"cuda:{local or 0}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local or 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world == 1:
        return DistInfo(device=device)
    if rank is None:
        raise ValueError("WORLD_SIZE is set but RANK is not; start several processes with torchrun")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local or 0, device=device)


def cleanup_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (a no-op in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; ``[obj]`` in a world of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over every process (``values`` in a world of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
