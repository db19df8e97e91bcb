"""Training on several processes: which one this is, and the few collective steps training needs.

`torchrun --nproc_per_node=N -m labkit train ...` starts N copies of the command with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their environment. Each copy joins one
process group (NCCL between GPUs, gloo between CPU processes) and trains one share of every batch;
DistributedDataParallel averages the gradients, so all copies hold the same weights. Without those
variables nothing here talks to another process: `init_from_env` describes a single process and
its collectives return their input unchanged.
"""

import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# A collective that waits longer than this fails with an error instead of hanging. It must cover
# the longest stretch one process works alone: rank 0 decoding the dataset into its cache.
TIMEOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class WorldInfo:
    """This process's place among the processes training one model (one process without torchrun)."""

    rank: int = 0  # 0 .. world_size - 1, over all machines
    world_size: int = 1
    local_rank: int = 0  # the index among the processes of this machine: its GPU
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where this process trains
    distributed: bool = False  # a process group is up (started by torchrun, even with one process)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and history and shows progress."""
        return self.rank == 0

    def share(self, count: int) -> slice:
        """This rank's contiguous share of `count` items; the shares of all ranks partition them."""
        return slice(self.rank * count // self.world_size, (self.rank + 1) * count // self.world_size)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `tensor` over all ranks, on `tensor`'s device (a new tensor)."""
        if not self.distributed:
            return tensor
        summed = tensor.to(self.device, copy=True)  # NCCL reduces GPU tensors only
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed.to(tensor.device)

    def gather_shares(self, rows: torch.Tensor, share: slice, count: int) -> torch.Tensor:
        """All `count` rows, in order, from every rank's `rows` for its `share` of them.

        Each rank puts its rows into zeros and the zeros are summed, so integer rows come back
        exactly as they went in."""
        full = rows.new_zeros((count, *rows.shape[1:]))
        full[share] = rows
        return self.all_reduce_sum(full)

    def broadcast_from_main(self, tensors) -> None:
        """Overwrite `tensors` (on this rank's device) with rank 0's values, in place."""
        if self.distributed:
            for tensor in tensors:
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        """Wait until every rank has come here."""
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (filling a cache), then the other ranks (reading it)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The device one torchrun process trains on: GPU number LOCAL_RANK, or the CPU.

    Raises:
        ValueError: a GPU named by number, too few GPUs, or a device without a backend.
    """
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"torchrun training runs on CUDA GPUs (NCCL) or on CPUs (gloo), not on {device.type}; "
                         "use --device cpu")
    if device.index is not None:
        raise ValueError(f"--device {device} names one GPU, but under torchrun each process takes the GPU of its "
                         "LOCAL_RANK; use --device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"process LOCAL_RANK={local_rank} has no GPU: only {torch.cuda.device_count()} are visible; "
                         "start at most that many processes per machine (--nproc_per_node)")
    return torch.device("cuda", local_rank)


def init_from_env(device: torch.device) -> WorldInfo:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on the
    CPU), or describe a single process on `device` when torchrun did not start this one."""
    if not launched_by_torchrun():
        return WorldInfo(device=device)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = rank_device(device, local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
    return WorldInfo(rank, world_size, local_rank, device, distributed=True)


@contextlib.contextmanager
def process_group(device: torch.device):
    """`init_from_env(device)` for the block; the group it started is destroyed afterwards,
    however the block ends. A group the caller had started already is left as it is."""
    started_here = launched_by_torchrun() and not dist.is_initialized()
    world = init_from_env(device)
    try:
        yield world
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()


def data_parallel(model: nn.Module, world: WorldInfo) -> tuple[nn.Module, nn.Module]:
    """The model checkpoints save, and the one training steps call.

    Under torchrun the steps call DistributedDataParallel around the model, which averages the
    gradients of all ranks; on GPUs batch norm is synchronised first (SyncBatchNorm normalises
    with the statistics of the whole batch, not of one GPU's share). gloo has no SyncBatchNorm, so
    on CPUs each rank normalises with its own share's statistics. In one process both are `model`."""
    if not world.distributed:
        return model, model
    if world.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, DistributedDataParallel(model, device_ids=[world.device.index])
    return model, DistributedDataParallel(model)


def processes_of(world: WorldInfo, model: nn.Module, step_model: nn.Module) -> dict:
    """How the processes of a run trained together, for its checkpoint: how many, over which
    backend, whether the steps averaged gradients with DistributedDataParallel and whether batch
    norm was synchronised."""
    stepped = getattr(step_model, "_orig_mod", step_model)  # behind torch.compile
    return {"count": world.world_size, "backend": dist.get_backend() if world.distributed else None,
            "data_parallel": isinstance(stepped, DistributedDataParallel),
            "sync_batch_norm": any(isinstance(module, nn.SyncBatchNorm) for module in model.modules())}


def rank_label() -> str:
    """" (rank 1 of 2)" for an error message under torchrun, else ""."""
    if not launched_by_torchrun():
        return ""
    return f" (rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']})"
