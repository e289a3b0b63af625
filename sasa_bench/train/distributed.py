"""One process or many: PyTorch's own distributed engine, started by torchrun.

`torchrun --nproc_per_node N -m sasa_bench train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; `init_world` then joins the process group (NCCL on GPUs, gloo on CPU).
Without torchrun, the world is this one process and every collective below is a no-op.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sasa_bench.devices import resolve_device
from sasa_bench.errors import SasaBenchError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, checkpoints and writes records; the others only compute."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: str = "auto") -> World:
    """Join the process group torchrun describes (if any) and pick this process's device:
    `auto`, `cpu`, `cuda` or `cuda:N` (`sasa_bench.devices`). Under torchrun each process
    takes the GPU of its local rank, so an index is only accepted for one process."""
    target = resolve_device(device, kinds=("cpu", "cuda"))
    cuda = target.type == "cuda"
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if target.index is not None and size > 1:
            raise SasaBenchError(
                f"--device {device}: under torchrun each process uses the GPU of its local "
                "rank; use --device cuda"
            )
        index = local_rank if target.index is None else target.index
        torch.cuda.set_device(index)
        target = torch.device("cuda", index)
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        kwargs = {"device_id": target} if cuda else {}
        dist.init_process_group(backend=backend, **kwargs)
    return World(rank, size, local_rank, target)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of `values` over all processes (float64 on the device, for exact counts)."""
    values = values.to(world.device, torch.float64)
    if world.distributed:
        dist.all_reduce(values)
    return values


def average_buffers(model: nn.Module, world: World) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the processes, so that
    every rank evaluates and checkpoints one model (timm's distribute_bn, 'reduce')."""
    if not world.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world.size)


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's state (parameters and buffers, in order): equal digests mean
    bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()
