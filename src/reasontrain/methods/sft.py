"""SFT and Masked Thought: data -> init -> evaluate start -> SFT (with optional input noise) -> evaluate."""

from __future__ import annotations

from pathlib import Path

from reasontrain.config import ConfigError
from reasontrain.methods.checks import check_training
from reasontrain.methods.common import begin, finish
from reasontrain.stages.train_sft import train_sft


def validate(cfg) -> None:
    check_training(cfg.train)
    mt = cfg.masked_thought
    if not 0.0 <= mt.max_rate < 1.0:
        raise ConfigError(f"masked_thought.max_rate={mt.max_rate} must be in [0, 1)")
    if not 0.0 < mt.ramp_fraction <= 1.0:
        raise ConfigError(f"masked_thought.ramp_fraction={mt.ramp_fraction} must be in (0, 1]")


def run(cfg, run_dir: Path, tracker) -> dict:
    start = begin(cfg, run_dir, start_sft=False)
    label = "masked_thought" if cfg.masked_thought.max_rate > 0 else "sft"
    return finish(cfg, run_dir, start, train_sft(cfg, run_dir, start.policy, start.split(cfg), label=label))
