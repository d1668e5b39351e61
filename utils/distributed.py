"""This process's place in a torchrun launch, and joining its process group."""
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun launch (rank 0 of 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def join(device: torch.device, dist: Dist) -> torch.device:
    """The device of this process (its own GPU under torchrun); joins the process group when there are
    several processes (NCCL on GPUs, else gloo)."""
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if dist.world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def data_parallel(net: nn.Module, device: torch.device, dist: Dist) -> nn.Module:
    """`net` in DistributedDataParallel when there are several processes, else `net` itself."""
    if dist.world == 1:
        return net
    # Depthwise conv weight gradients differ from their buckets only in the stride of a size-1 dimension.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # static_graph: the same parameters go unused every step (NeRD-Rain's reduce_chan_level1_max3).
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                   static_graph=True)


def leave() -> None:
    """Leaves the process group, if this process joined one."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def mean_over_processes(value: torch.Tensor, dist: Dist) -> float:
    """A scalar averaged over all processes (a NaN anywhere makes it NaN everywhere)."""
    value = value.detach()
    if dist.world > 1:
        value = value.clone()
        torch_dist.all_reduce(value)
        value /= dist.world
    return value.item()
