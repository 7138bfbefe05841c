"""Losses as pure tensor functions of per-token log-probs, masks and weights."""

from reasontrain.losses.critical_tokens import contrastive_token_weights
from reasontrain.losses.outcome_rl import (
                                           group_advantages,
                                           oreal_loss,
                                           policy_gradient_loss,
                                           rloo_advantages,
                                           token_rm_loss,
                                           token_rm_weights,
)
from reasontrain.losses.preference import dpo_loss

__all__ = ["contrastive_token_weights", "dpo_loss", "group_advantages", "oreal_loss", "policy_gradient_loss",
           "rloo_advantages", "token_rm_loss", "token_rm_weights"]
