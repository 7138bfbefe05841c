"""Token-weighted DPO: one pure function for plain DPO, RISE and cDPO.

Inputs are per-token log-probs of shape (B, T) for the policy and the reference on the chosen and rejected
responses, with 0/1 masks marking response tokens. Token weights multiply the per-token log-ratios, so plain DPO
is the special case with all weights equal to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("sequence", "per_position")


def _sigmoid_loss(logits: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    # Conservative DPO (label smoothing) as in TRL's "sigmoid" loss; 0 gives the plain DPO loss.
    return (-(1 - label_smoothing) * F.logsigmoid(beta * logits)
            - label_smoothing * F.logsigmoid(-beta * logits))


def dpo_loss(
    policy_chosen: torch.Tensor,
    reference_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_rejected: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    *,
    beta: float = 0.1,
    chosen_weights: torch.Tensor | None = None,
    rejected_weights: torch.Tensor | None = None,
    mode: str = "sequence",
    nll_weight: float = 0.0,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return (scalar loss, metrics).

    With Δ = policy − reference per token and w the token weights:

    - `sequence`: mean over pairs of −log σ(β·(Σ_t w⁺_t Δ⁺_t − Σ_t w⁻_t Δ⁻_t)).
    - `per_position` (the official cDPO code): −log σ(β·(w⁺_t Δ⁺_t − w⁻_t Δ⁻_t)) at every position t of the
      padded (B, T) grid, averaged over all B·T positions, masked ones included (they add log 2 and no gradient).
      Chosen and rejected must share the grid: position t of one is paired with position t of the other.
    - `nll_weight` adds that multiple of the chosen responses' NLL under the policy, averaged per token.

    Metrics (detached): rewards of chosen and rejected (β·Σ w·Δ), their margin, and the preference accuracy.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")
    cm, rm = chosen_mask.to(policy_chosen.dtype), rejected_mask.to(policy_rejected.dtype)
    wc = cm if chosen_weights is None else chosen_weights.to(policy_chosen.dtype) * cm
    wr = rm if rejected_weights is None else rejected_weights.to(policy_rejected.dtype) * rm
    # Sums of policy and reference are taken separately, as TRL does, so unit weights reproduce its loss bit for bit.
    chosen_sum = (wc * policy_chosen).sum(-1) - (wc * reference_chosen).sum(-1)
    rejected_sum = (wr * policy_rejected).sum(-1) - (wr * reference_rejected).sum(-1)

    if mode == "sequence":
        loss = _sigmoid_loss(chosen_sum - rejected_sum, beta, label_smoothing).mean()
    else:
        d_chosen = wc * (policy_chosen - reference_chosen)
        d_rejected = wr * (policy_rejected - reference_rejected)
        if d_chosen.shape != d_rejected.shape:
            raise ValueError(f"per_position needs chosen and rejected on one grid, got {tuple(d_chosen.shape)} "
                             f"and {tuple(d_rejected.shape)}")
        loss = _sigmoid_loss(d_chosen - d_rejected, beta, label_smoothing).mean()

    metrics = {}
    if nll_weight:
        nll = -(policy_chosen * cm).sum() / cm.sum().clamp(min=1)
        loss = loss + nll_weight * nll
        metrics["nll"] = nll.detach()
    with torch.no_grad():
        r_chosen, r_rejected = beta * chosen_sum, beta * rejected_sum
        metrics.update({
            "rewards/chosen": r_chosen.mean(),
            "rewards/rejected": r_rejected.mean(),
            "rewards/margins": (r_chosen - r_rejected).mean(),
            "rewards/accuracies": (r_chosen > r_rejected).float().mean(),
        })
    return loss, metrics
