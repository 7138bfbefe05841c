"""Masked Thought input noise: corrupt response tokens of the input while the labels keep the originals.

Pure tensor functions, so tests pin the schedule and the masking without a model.
"""

from __future__ import annotations

import torch


def mask_rate(step: int, total_steps: int, max_rate: float, ramp_fraction: float = 0.66) -> float:
    """Linear ramp from 0 to `max_rate` over the first `ramp_fraction` of training, then constant.

    Same formula as the official code: min(max_rate, max_rate * step / (ramp_fraction * total + 1)).
    """
    if max_rate <= 0:
        return 0.0
    return min(max_rate, max_rate * step / (ramp_fraction * total_steps + 1))


def mask_response_tokens(input_ids: torch.Tensor, labels: torch.Tensor, rate: float, *, noise: str,
                         mask_id: int | None, replacement_ids: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """A copy of `input_ids` with a random subset of response positions (labels != -100) replaced.

    Per sequence, the count is Binomial(n_response, rate) and the positions are drawn without replacement.
    `noise="mask_token"` writes `mask_id`; `noise="random_token"` draws uniformly from `replacement_ids`.
    """
    out = input_ids.clone()
    if rate <= 0:
        return out
    eligible = labels != -100
    for b in range(input_ids.shape[0]):
        pos = eligible[b].nonzero(as_tuple=True)[0]
        if pos.numel() == 0:
            continue
        n = int((torch.rand(pos.numel(), generator=generator) < rate).sum())
        if n == 0:
            continue
        chosen = pos[torch.randperm(pos.numel(), generator=generator)[:n]]
        if noise == "random_token":
            pick = torch.randint(0, replacement_ids.numel(), (n,), generator=generator)
            out[b, chosen] = replacement_ids[pick].to(out.dtype)
        elif noise == "mask_token":
            out[b, chosen] = mask_id
        else:
            raise ValueError(f"unknown noise {noise!r}")
    return out
