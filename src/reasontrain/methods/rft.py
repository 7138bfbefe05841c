"""Rejection-sampling SFT (RFT): the starting policy's own correct samples become its SFT data.

data -> start policy -> sample K -> grade -> keep the correct samples (distinct per question) -> SFT -> evaluate.
"""

from __future__ import annotations

from pathlib import Path

from reasontrain.config import ConfigError, MaskedThoughtConfig
from reasontrain.methods.checks import check_sampling, check_start, check_training
from reasontrain.methods.common import begin, finish, sample_and_grade
from reasontrain.stages.sample import correct_samples_stage
from reasontrain.stages.train_sft import train_sft


def validate(cfg) -> None:
    check_start(cfg)
    check_sampling(cfg)
    check_training(cfg.train)
    if cfg.rft.max_per_question is not None and cfg.rft.max_per_question < 1:
        raise ConfigError(f"rft.max_per_question={cfg.rft.max_per_question} must be at least 1 (or null: all)")


def run(cfg, run_dir: Path, tracker) -> dict:
    start = begin(cfg, run_dir)
    records = correct_samples_stage(cfg, run_dir, sample_and_grade(cfg, run_dir, start))
    train_dir = train_sft(cfg, run_dir, start.policy, records, label="rft", masked_thought=MaskedThoughtConfig())
    return finish(cfg, run_dir, start, train_dir)
