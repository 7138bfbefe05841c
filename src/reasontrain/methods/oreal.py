"""OREAL: data -> start policy -> evaluate start -> difficulty rebalancing -> online RL with a token RM -> evaluate.

Each step samples K responses for B prompts, grades them, takes RLOO advantages on all K, keeps one correct and one
incorrect response per mixed prompt, trains the token reward model on them and (after `oreal.actor_freeze_steps`)
the policy with L+ + L- + KL to the initial policy (ALGORITHMS.md section 3).
"""

from __future__ import annotations

from reasontrain.config import ConfigError
from reasontrain.methods.checks import check_online, check_optimizer
from reasontrain.methods.common import run_online


def validate(cfg) -> None:
    check_online(cfg)
    o = cfg.oreal
    if o.token_rm:
        check_optimizer(o.rm, "oreal.rm")
    if o.actor_freeze_steps < 0 or o.actor_freeze_steps >= cfg.online.steps:
        raise ConfigError(f"oreal.actor_freeze_steps={o.actor_freeze_steps} must be in [0, online.steps="
                          f"{cfg.online.steps}): the policy would never train")
    if o.positive_loss_factor < 0 or o.negative_loss_factor < 0:
        raise ConfigError(f"oreal.positive_loss_factor={o.positive_loss_factor} and oreal.negative_loss_factor="
                          f"{o.negative_loss_factor} must be >= 0")


run = run_online
