"""What every generation backend takes and returns (sharding prompts across ranks is in `distributed`)."""

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


def sample_seed(seed: int, prompt_index: int, sample_index: int = 0) -> int:
    """The seed of one sample: it depends on the prompt's place in the whole list, not on the batch or rank
    that draws it, so a sharded run and a single-process run sample the same completions."""
    return ((seed * 1_000_003 + prompt_index) * 1_000_003 + sample_index) % (2**63 - 1)
