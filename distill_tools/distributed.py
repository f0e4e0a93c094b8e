"""Data-parallel training under ``torchrun``: which process this is, the process group, and the few collectives
the pipeline needs.

``torchrun --nproc_per_node N -m distill_tools run RECIPE`` starts N copies of the pipeline (``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment). They join one process group (NCCL on CUDA, gloo on
CPU), split the teacher pass's shards and each step's examples by rank, all-reduce the gradients once per step
(as DDP does with ``no_sync`` over the accumulation), and step identical optimizers. Rank 0 alone writes
checkpoints, the GGUF, the registry entry and the report. One process (no ``WORLD_SIZE``) changes nothing.

Deliberately, torch is imported inside the functions that use it, never at the top: ``python -m distill_tools``
asks :func:`world` which rank it is before torch loads (see ``__main__``), and the command line loads this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files and talks to the user."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from the variables ``torchrun`` sets (one process without them)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def device() -> Any:
    """CUDA when present (this rank's GPU), else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", world().local_rank)
    return torch.device("cpu")


def start() -> World:
    """Join the process group when started by torchrun (idempotent); returns this process's place."""
    import datetime

    import torch
    import torch.distributed as dist

    place = world()
    if place.parallel and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(place.local_rank)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return place


def stop() -> None:
    """Leave the process group (at the end of a run, or when it fails). What is left of a sharded model (FSDP's
    hooks hold it in reference cycles, with gloo work objects) is collected first, while the group lives: left
    to interpreter exit, gloo aborted the process now and then ("terminate called without an active exception")."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sums over every rank (the values themselves in one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_reduce_gradients(parameters: list[Any]) -> None:
    """Sum the gradients over every rank, in one flat buffer (each rank's loss is already divided by the global
    token count, so the sum is the one-process gradient)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(parameters, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
