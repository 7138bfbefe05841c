"""Everything about the process group in one place: joining it, who this process is, and the collectives the
stages and trainers share (barrier, gather in rank order, sums, sharding).

Rank and world size come from the process group once it exists. Before that (logging set-up, start-up checks)
they come from the launcher's environment (`RANK`, `WORLD_SIZE`, set by torchrun or Slurm's launcher), which is
the group the process is about to join. Nothing here imports from the rest of the package.
"""

from __future__ import annotations

import os


def _group():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def launch_rank() -> int:
    """This process's global rank as the launcher set it (0 outside a launcher); valid before the group exists."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    group = _group()
    return group.get_world_size() if group is not None else int(os.environ.get("WORLD_SIZE", "1"))


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the joined process group; (0, 1) when there is none."""
    group = _group()
    return (group.get_rank(), group.get_world_size()) if group is not None else (0, 1)


def is_main_process() -> bool:
    return dist_info()[0] == 0


def barrier() -> None:
    group = _group()
    if group is not None:
        group.barrier()


def init_distributed(kind: str, timeout_minutes: float) -> None:
    """Under a launcher, join the process group (NCCL on GPUs, gloo on CPU) before any stage runs.

    Every collective times out after `timeout_minutes`, so a rank that waits on a dead or stuck peer fails instead
    of hanging. DeepSpeed (`kind == "deepspeed"`) gets the group before any training arguments exist, which ZeRO-3
    with a reference model needs.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _group() is not None:
        return
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        # One GPU per process: stages that place models themselves (sampling, evaluation) use the current device.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = timedelta(minutes=timeout_minutes)
    if kind == "deepspeed":
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend, timeout=timeout)
    else:
        dist.init_process_group(backend, timeout=timeout)


def device_for_rank():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def shard_start(n: int, rank: int, world: int) -> int:
    """Index of the first of `n` items in shard `rank` of `world`."""
    per, extra = divmod(n, world)
    return rank * per + min(rank, extra)


def shard(items: list, rank: int, world: int) -> list:
    """Contiguous shard `rank` of `world`; shards differ in length by at most one."""
    per, extra = divmod(len(items), world)
    start = shard_start(len(items), rank, world)
    return items[start:start + per + (1 if rank < extra else 0)]


def gather_in_order(local: list) -> list:
    """Concatenate every rank's shard in rank order (identity when not distributed)."""
    group = _group()
    if group is None or group.get_world_size() == 1:
        return local
    parts: list = [None] * group.get_world_size()
    group.all_gather_object(parts, local)
    return [x for part in parts for x in part]


def sum_over_ranks(values: list[float], device=None) -> list[float]:
    """Element-wise sums of `values` over every rank (float64)."""
    group = _group()
    if group is None or group.get_world_size() == 1:
        return [float(v) for v in values]
    import torch

    t = torch.tensor([float(v) for v in values], device=device, dtype=torch.float64)
    group.all_reduce(t)
    return t.tolist()
