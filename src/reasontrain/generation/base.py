"""What every generation backend takes and returns, and how prompts are sharded across ranks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (hit max_new_tokens: truncated)
    num_tokens: int
    token_ids: tuple[int, ...] = field(default=(), repr=False)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to (not including) the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_start(n: int, rank: int, world: int) -> int:
    """Index of the first of `n` items in shard `rank` of `world`."""
    per, extra = divmod(n, world)
    return rank * per + min(rank, extra)


def shard(items: list, rank: int, world: int) -> list:
    """Contiguous shard `rank` of `world`; shards differ in length by at most one."""
    per, extra = divmod(len(items), world)
    start = shard_start(len(items), rank, world)
    return items[start:start + per + (1 if rank < extra else 0)]


def sample_seed(seed: int, prompt_index: int, sample_index: int = 0) -> int:
    """The seed of one sample: it depends on the prompt's place in the whole list, not on the batch or rank
    that draws it, so a sharded run and a single-process run sample the same completions."""
    return ((seed * 1_000_003 + prompt_index) * 1_000_003 + sample_index) % (2**63 - 1)


def gather_in_order(local: list) -> list:
    """Concatenate every rank's shard in rank order (identity when not distributed)."""
    import torch.distributed as dist

    rank, world = dist_info()
    if world == 1:
        return local
    parts: list = [None] * world
    dist.all_gather_object(parts, local)
    return [x for part in parts for x in part]
