"""OREAL's losses as pure functions (the official code's version, ALGORITHMS.md section 3.3).

All tensors are per token over response positions: log-probs (B, T), 0/1 masks (B, T). The three policy terms
use three different normalizers: the global counts of positive, negative and all response tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rloo_advantages(rewards: torch.Tensor, mode: str = "rloo", eps: float = 1e-6) -> torch.Tensor:
    """Advantages for rewards of shape (prompts, K).

    `rloo`: A_i = r_i − mean of the other K−1 rewards (with ±1 rewards: 2K(1−p)/(K−1) for a correct sample,
    −2Kp/(K−1) for an incorrect one). `grpo`: (r_i − mean) / (std + eps), std over the group (unbiased=False).
    """
    k = rewards.shape[-1]
    if mode == "rloo":
        if k < 2:
            raise ValueError("RLOO needs at least 2 samples per prompt")
        return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    if mode == "grpo":
        mean = rewards.mean(-1, keepdim=True)
        return (rewards - mean) / (rewards.std(-1, unbiased=False, keepdim=True) + eps)
    raise ValueError(f"mode={mode!r} is not one of ('rloo', 'grpo')")


def token_rm_weights(rm_logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ω⁺, ω⁻) from a token reward model's per-position logits (B, T).

    q_t = σ(cumulative mean of the logits up to t, over response positions); ω⁺ = max(2q−1, 0),
    ω⁻ = max(1−2q, 0). Zero off the response. Detached: the weights are constants for the policy.
    """
    with torch.no_grad():
        m = mask.to(rm_logits.dtype)
        count = m.cumsum(-1).clamp(min=1)
        q = torch.sigmoid((rm_logits * m).cumsum(-1) / count)
        return (2 * q - 1).clamp(min=0) * m, (1 - 2 * q).clamp(min=0) * m


def token_rm_loss(rm_logits: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor,
                  num_sequences: float | None = None) -> torch.Tensor:
    """BCE of σ(mean logit over the response) against the outcome (1 correct, 0 not), averaged over sequences.

    `num_sequences` replaces this batch's count as the divisor (the global count over ranks and micro-batches).
    """
    m = mask.to(rm_logits.dtype)
    mean_logit = (rm_logits * m).sum(-1) / m.sum(-1).clamp(min=1)
    per_seq = F.binary_cross_entropy_with_logits(mean_logit, correct.to(mean_logit.dtype), reduction="none")
    n = per_seq.numel() if num_sequences is None else num_sequences
    return per_seq.sum() / max(n, 1)


def oreal_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    is_positive: torch.Tensor,
    pos_weights: torch.Tensor | None = None,
    neg_weights: torch.Tensor | None = None,
    *,
    kl_coef: float = 0.01,
    positive_loss_factor: float = 1.0,
    negative_loss_factor: float = 0.5,
    num_pos_tokens: float | None = None,
    num_neg_tokens: float | None = None,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L⁺ + L⁻ + KL for a batch of kept trajectories; returns (loss, metrics).

    L⁺ = factor⁺ · Σ_{i positive} A_i Σ_t ω⁺_t (−ℓ_t) / N⁺_tok
    L⁻ = −factor⁻ · Σ_{i negative} A_i Σ_t ω⁻_t exp(ℓ_t − sg ℓ_t) / N⁻_tok   (value A·ω, gradient A·ω·∇ℓ)
    KL = kl_coef · Σ_{i,t} [exp(ℓ^ref − ℓ) − (ℓ^ref − ℓ) − 1] / N_tok          (k3 estimator)
    The token counts default to this batch's; pass the global counts (over all ranks and micro-batches) to
    reproduce the official normalization exactly. Weights default to 1 (the `token_rm=false` ablation).
    """
    m = mask.to(logps.dtype)
    pos = is_positive.to(logps.dtype).unsqueeze(-1) * m
    neg = (1 - is_positive.to(logps.dtype)).unsqueeze(-1) * m
    wp = pos if pos_weights is None else pos_weights * pos
    wn = neg if neg_weights is None else neg_weights * neg
    adv = advantages.to(logps.dtype).unsqueeze(-1)
    n_pos = pos.sum() if num_pos_tokens is None else torch.as_tensor(num_pos_tokens, dtype=logps.dtype)
    n_neg = neg.sum() if num_neg_tokens is None else torch.as_tensor(num_neg_tokens, dtype=logps.dtype)
    n_all = m.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=logps.dtype)

    l_pos = positive_loss_factor * (adv * wp * -logps).sum() / n_pos.clamp(min=1)
    ratio = torch.exp(logps - logps.detach())
    l_neg = -negative_loss_factor * (adv * wn * ratio).sum() / n_neg.clamp(min=1)
    d = (ref_logps - logps) * m
    kl = kl_coef * ((torch.exp(d) - d - 1) * m).sum() / n_all.clamp(min=1)
    loss = l_pos + l_neg + kl
    return loss, {"loss/positive": l_pos.detach(), "loss/negative": l_neg.detach(), "kl": kl.detach() / kl_coef
                  if kl_coef else kl.detach()}


def group_advantages(rewards: torch.Tensor, estimator: str, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Advantages of the policy-gradient baselines for rewards of shape (prompts, K).

    `grpo`: r_i − mean of the group, divided by the group's std (unbiased=False) + eps when `scale` (Dr. GRPO
    leaves it out). `rloo`: r_i − mean of the other K−1 rewards (RLOO's leave-one-out baseline).
    A group whose rewards are all equal gets advantage 0 either way: it carries no learning signal.
    """
    if estimator == "rloo":
        return rloo_advantages(rewards, "rloo")
    if estimator != "grpo":
        raise ValueError(f"estimator={estimator!r} is not one of ('grpo', 'rloo')")
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.std(-1, unbiased=False, keepdim=True) + eps) if scale else centred


def policy_gradient_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    loss_type: str = "dapo",
    kl_coef: float = 0.0,
    num_tokens: float | None = None,
    num_sequences: float | None = None,
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The on-policy GRPO / RLOO loss for a batch of sampled responses; returns (loss, metrics).

    Per token: ℓ_it = −A_i · exp(ℓ_it − sg ℓ_it) (value −A_i, gradient −A_i ∇ℓ_it; one update per rollout, so the
    PPO ratio is 1 and its clip never acts). Reduced by `loss_type`:
      dapo:    Σ_{i,t} ℓ_it / N_tok                                  (every token counts the same; DAPO)
      dr_grpo: Σ_{i,t} ℓ_it / (N_seq · max_tokens)                   (a constant divisor: no length bias; Dr. GRPO)
      grpo:    Σ_i (Σ_t ℓ_it / |o_i|) / N_seq                         (per-sequence mean first; the original GRPO)
    plus kl_coef · k3 KL to the reference, Σ_{i,t} [exp(ℓ^ref − ℓ) − (ℓ^ref − ℓ) − 1] / N_tok.
    The counts default to this batch's; pass the global counts (over ranks and micro-batches) so that the
    summed gradients equal one full-batch step.
    """
    m = mask.to(logps.dtype)
    n_tok = m.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=logps.dtype)
    n_seq = torch.as_tensor(logps.shape[0] if num_sequences is None else num_sequences, dtype=logps.dtype)
    per_token = -advantages.to(logps.dtype).unsqueeze(-1) * torch.exp(logps - logps.detach()) * m
    if loss_type == "dapo":
        pg = per_token.sum() / n_tok.clamp(min=1)
    elif loss_type == "dr_grpo":
        width = max_tokens if max_tokens is not None else logps.shape[-1]
        pg = per_token.sum() / (n_seq.clamp(min=1) * width)
    elif loss_type == "grpo":
        pg = (per_token.sum(-1) / m.sum(-1).clamp(min=1)).sum() / n_seq.clamp(min=1)
    else:
        raise ValueError(f"loss_type={loss_type!r} is not one of ('dapo', 'dr_grpo', 'grpo')")
    kl = logps.new_zeros(())
    if ref_logps is not None and kl_coef:
        d = (ref_logps - logps) * m
        kl = ((torch.exp(d) - d - 1) * m).sum() / n_tok.clamp(min=1)
    return pg + kl_coef * kl, {"loss/pg": pg.detach(), "kl": kl.detach()}
