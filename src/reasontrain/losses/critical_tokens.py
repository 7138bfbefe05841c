"""cDPO's contrastive estimation: which rejected tokens a model tuned on wrong answers likes and one tuned on
right answers does not. Those "critical tokens" get high weight in token-level DPO."""

from __future__ import annotations

import torch


def contrastive_token_weights(pos_logits: torch.Tensor, neg_logits: torch.Tensor, token_ids: torch.Tensor,
                              gamma: float = 1.0) -> torch.Tensor:
    """Weights 1 − p_CE for the given tokens, shape (B, T).

    `pos_logits` / `neg_logits` (B, T, V) are the positive and negative models' logits at the positions that
    predict `token_ids` (B, T). p_CE = softmax((1+γ)·z⁺ − γ·z⁻)[token]: a token the positive model strongly
    prefers gets weight near 0, one only the negative model likes gets weight near 1. No gradient flows.
    """
    with torch.no_grad():
        contrast = (1.0 + gamma) * pos_logits.float() - gamma * neg_logits.float()
        p = torch.softmax(contrast, dim=-1).gather(-1, token_ids.long().unsqueeze(-1)).squeeze(-1)
        return 1.0 - p
