"""OREAL: data -> start policy -> evaluate start -> difficulty rebalancing -> online RL with a token RM -> evaluate."""

from __future__ import annotations

from pathlib import Path

from reasontrain.cli import ConfigError
from reasontrain.methods.dpo import finish, starting_policy
from reasontrain.stages.data import prepare_data
from reasontrain.stages.evaluate import evaluate_model
from reasontrain.stages.oreal import rebalance_stage, train_oreal


class OrealConfigError(ConfigError):
    pass


def check_config(cfg) -> None:
    """Values types alone cannot rule out; run before any stage, so a bad value or resume path fails at once."""
    o = cfg.oreal
    if o.samples_per_prompt < 2:
        raise OrealConfigError(f"oreal.samples_per_prompt={o.samples_per_prompt}: RLOO needs at least 2")
    if o.prompts_per_step < 1 or o.steps < 1:
        raise OrealConfigError("oreal.prompts_per_step and oreal.steps must be at least 1")
    if o.reward_shaping not in ("rloo", "grpo"):
        raise OrealConfigError(f"oreal.reward_shaping={o.reward_shaping!r} is not one of ('rloo', 'grpo')")
    if getattr(cfg.generation.backend, "value", cfg.generation.backend) != "hf":
        raise OrealConfigError("recipe=oreal samples with the policy being trained, through generation=hf; "
                               "vLLM would need its weights synced every step, which is not implemented")
    r = o.rebalance
    if len(r.repeats) != len(r.edges) + 1:
        raise OrealConfigError(f"oreal.rebalance.repeats has {len(r.repeats)} values for {len(r.edges)} edges "
                               f"(needs one per bucket: {len(r.edges) + 1})")
    if list(r.edges) != sorted(r.edges) or any(not 0 < e <= 1 for e in r.edges):
        raise OrealConfigError(f"oreal.rebalance.edges={list(r.edges)} must be increasing within (0, 1]")
    if any(n < 0 for n in r.repeats) or not any(r.repeats):
        raise OrealConfigError(f"oreal.rebalance.repeats={list(r.repeats)} must be >= 0 and not all 0")
    if o.resume:
        from reasontrain.trainers.oreal import find_checkpoint

        find_checkpoint(o.resume)


def run(cfg, run_dir: Path, tracker) -> dict:
    check_config(cfg)
    data_dir = prepare_data(cfg, run_dir)
    policy = starting_policy(cfg, run_dir, data_dir)
    before = evaluate_model(cfg, run_dir, policy, data_dir, "start") if cfg.eval.before else None
    prompts = rebalance_stage(cfg, run_dir, policy, data_dir / f"{cfg.data.train_split}.jsonl")
    train_dir = train_oreal(cfg, run_dir, policy, prompts, tracker)
    return finish(cfg, run_dir, data_dir, before, train_dir)
