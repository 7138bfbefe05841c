"""GRPO, the baseline of online RL: data -> start policy -> evaluate start -> difficulty rebalancing -> online RL
-> evaluate, on the same loop as OREAL.

Each step samples K responses for B prompts and grades them; advantages are the rewards normalized within each
prompt's group, (r - mean) / std (`grpo.scale_rewards=false`: mean-centred only, Dr. GRPO); every response trains
with the token-level policy-gradient loss of `grpo.loss_type` (dapo | dr_grpo | grpo), plus `online.kl_coef` x KL.
"""

from __future__ import annotations

from reasontrain.methods.checks import check_online
from reasontrain.methods.common import run_online


def validate(cfg) -> None:
    check_online(cfg)


run = run_online
