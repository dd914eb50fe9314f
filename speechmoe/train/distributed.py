"""Data-parallel training with torch.distributed, launched by torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs in one
process. The backend is NCCL when CUDA is available, gloo on CPU.

    # one machine, N processes (GPUs, or CPU processes with gloo)
    torchrun --standalone --nproc-per-node N local/train.py ...
    # several machines: the same command on each, with its --node-rank
    torchrun --nnodes M --node-rank R --nproc-per-node N \
        --rdzv-backend c10d --rdzv-endpoint HOST:29500 local/train.py ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from speechmoe.utils import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device).type == "cuda"
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of x over all ranks (a new tensor; x is left alone)."""
    import torch.distributed as dist

    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
