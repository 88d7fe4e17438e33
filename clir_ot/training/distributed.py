"""Data-parallel training under ``torchrun``: the same entry point runs alone or as one of N processes.

``torchrun --nproc-per-node N`` (``python -m torch.distributed.run``) sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`init_distributed` then joins the process group
(NCCL when CUDA is available, gloo on CPU). Without those variables it returns a single-process
:class:`DistInfo` and nothing distributed happens.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["DistInfo", "current", "init_distributed", "shutdown_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and the manifest (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def default_device(self) -> torch.device:
        """``cuda:<local_rank>`` when CUDA is available, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    # collective helpers: no-ops in a single process

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over all processes."""
        if not self.distributed:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (picklable objects)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def current() -> DistInfo:
    """The state of an already initialised process group (single process if none)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return DistInfo(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", "0")), torch.distributed.get_backend())
    return DistInfo()


def init_distributed(device: str | None = None) -> tuple[DistInfo, bool]:
    """Join the process group that ``torchrun`` describes in the environment, if any: NCCL where CUDA
    is available, gloo otherwise or when the job was told to run on the CPU (``device="cpu"``, so that
    more CPU processes than GPUs can run on a GPU host).

    Returns ``(info, started)``; ``started`` is true when this call created the group (the caller
    then ends it with :func:`shutdown_distributed`).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return current(), False
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_cpu = device is not None and torch.device(device).type == "cpu"
    backend = "nccl" if torch.cuda.is_available() and not on_cpu else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend=backend)
    info = current()
    logger.info("process %d of %d joined the %s process group", info.rank, info.world_size, backend)
    return info, True


def shutdown_distributed(started: bool) -> None:
    """End the process group if :func:`init_distributed` started it."""
    if started and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
