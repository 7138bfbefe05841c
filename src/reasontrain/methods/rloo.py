"""RLOO, the REINFORCE baseline of online RL: data -> start policy -> evaluate start -> difficulty rebalancing ->
online RL -> evaluate, on the same loop as OREAL.

Each step samples K responses for B prompts and grades them; a response's advantage is its reward minus the mean
reward of the other K-1 responses to its prompt (Ahmadian et al., 2024); every response trains with the
token-level policy-gradient loss of `rloo.loss_type`, plus `online.kl_coef` x KL.
"""

from __future__ import annotations

from reasontrain.methods.checks import check_online
from reasontrain.methods.common import run_online


def validate(cfg) -> None:
    check_online(cfg)


run = run_online
