"""Losses as pure tensor functions of per-token log-probs, masks and weights."""

from reasontrain.losses.preference import dpo_loss

__all__ = ["dpo_loss"]
