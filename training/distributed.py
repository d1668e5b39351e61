"""This process's place in a job of several processes (started by torchrun or by Slurm's srun), joining
its process group, and what the processes exchange."""
import contextlib
import os
import re
import subprocess
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# Joining, and every collective of training. Finite, so that a process that never comes ends the job.
START_TIMEOUT = timedelta(minutes=10)
# Waiting for rank 0 alone (start-up checks, validation, checkpoints): long, as a validation can be. A
# rank that dies closes its connections, which ends the wait at once on the others.
MAIN_WORK_TIMEOUT = timedelta(hours=6)
DEFAULT_PORT = 29500  # torchrun's
_main_work_group: Any = None  # a gloo group with MAIN_WORK_TIMEOUT, once joined


class PeerStopped(Exception):
    """Rank 0 stopped at start-up; its own message says why."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (rank 0 of 1 when it runs alone), and where the job meets."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    master: str | None = None  # HOST:PORT for Slurm; None: torchrun's environment says

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Dist":
        """From torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE) or, without them, from those of a
        Slurm job step started by srun with one task per GPU (SLURM_PROCID, SLURM_LOCALID,
        SLURM_STEP_NUM_TASKS, the first node of SLURM_STEP_NODELIST or SLURM_JOB_NODELIST as master,
        or MASTER_ADDR and MASTER_PORT where set)."""
        if "RANK" in env or "SLURM_STEP_NUM_TASKS" not in env:
            return cls(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
        host = env.get("MASTER_ADDR") or first_host(nodes)
        return cls(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_STEP_NUM_TASKS"]),
                   f"{host}:{env.get('MASTER_PORT', DEFAULT_PORT)}")


def first_host(nodelist: str) -> str:
    """The first host name of a Slurm node list such as 'gpu[07-08,11],cpu1': `scontrol show hostnames`'s
    first line, or where scontrol is missing the list's own first name."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    match = re.match(r"([^,\[]*)(?:\[([^,\]\-]*))?", nodelist.strip())
    if not match or not (match.group(1) or match.group(2)):
        raise ValueError(f"cannot read a host from the Slurm node list {nodelist!r}; set MASTER_ADDR")
    return match.group(1) + (match.group(2) or "")


def join(device: torch.device, dist: Dist) -> torch.device:
    """The device of this process (its own GPU when there are several processes); joins the process
    group when there are several (NCCL on GPUs, else gloo)."""
    global _main_work_group
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank % torch.cuda.device_count())  # srun may show one GPU
        torch.cuda.set_device(device)
    if dist.world > 1 and not torch_dist.is_initialized():
        where = {} if dist.master is None else {"init_method": f"tcp://{dist.master}", "rank": dist.rank,
                                                 "world_size": dist.world}
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=START_TIMEOUT, **where)
        _main_work_group = torch_dist.new_group(backend="gloo", timeout=MAIN_WORK_TIMEOUT)
    return device


def from_main(value: Any, dist: Dist) -> Any:
    """Rank 0's `value` on every process, once rank 0 has it: the others wait as long as rank 0 works."""
    if dist.world == 1:
        return value
    box = [value]
    torch_dist.broadcast_object_list(box, src=0, group=_main_work_group)
    return box[0]


def start_on_main(work: Callable[[], Any], dist: Dist) -> Any:
    """Runs `work` (start-up checks, reading a checkpoint) on rank 0 alone and returns its result on every
    process. When it raises, rank 0 re-raises the error and the other processes raise PeerStopped."""
    if not dist.main:
        done, value = from_main(None, dist)
        if not done:
            raise PeerStopped("rank 0 stopped at start-up")
        return value
    try:
        value = work()
    except BaseException:
        from_main((False, None), dist)
        raise
    return from_main((True, value), dist)[1]


def lost_peer(err: BaseException) -> bool:
    """Whether `err` is a collective failing because another process stopped (gloo raises plain
    RuntimeErrors, known by the source file they name)."""
    return isinstance(err, torch_dist.DistError) or (isinstance(err, RuntimeError) and "gloo/transport" in str(err))


def data_parallel(net: nn.Module, device: torch.device, dist: Dist, accumulate: int = 1) -> nn.Module:
    """`net` in DistributedDataParallel when there are several processes, else `net` itself; `accumulate`:
    the micro-batches of a step (train.accumulate), all but the last under gradient_sync_skipped."""
    if dist.world == 1:
        return net
    # Depthwise conv weight gradients differ from their buckets only in the stride of a size-1 dimension.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # The same parameters go unused every step (NeRD-Rain's reduce_chan_level1_max3): a static graph says so
    # once. Under no_sync a static graph fails its first backward, or once past that stops exchanging the
    # gradients (pytorch/pytorch#143580 and #187732), so accumulating runs look for unused ones every step.
    unused = {"static_graph": True} if accumulate == 1 else {"find_unused_parameters": True}
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None, **unused)


def leave() -> None:
    """Leaves the process group, if this process joined one."""
    global _main_work_group
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
    _main_work_group = None


def mean_over_processes(values: torch.Tensor, dist: Dist) -> list[float]:
    """A vector of scalars averaged over all processes, in one exchange (a NaN anywhere makes it NaN everywhere)."""
    values = values.detach()
    if dist.world > 1:
        values = values.clone()
        torch_dist.all_reduce(values)
        values /= dist.world
    return values.tolist()


def gradient_sync_skipped(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """DistributedDataParallel's no_sync() when `skip` is true and `model` is one: the backward passes in
    it add to the gradients without exchanging them, and the next backward outside it exchanges the sum."""
    return model.no_sync() if skip and isinstance(model, DistributedDataParallel) else contextlib.nullcontext()
