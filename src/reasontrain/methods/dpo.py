"""DPO on sampled pairs: data -> start policy -> sample K -> grade -> full pairs -> preference training -> eval.

The baseline of RISE: the same pipeline without the self-edited step pairs.
"""

from __future__ import annotations

from pathlib import Path

from reasontrain.methods.checks import check_preference
from reasontrain.methods.common import begin, finish, sample_and_grade
from reasontrain.stages.pairs import full_pairs_stage
from reasontrain.stages.train_preference import train_preference


def validate(cfg) -> None:
    check_preference(cfg)


def run(cfg, run_dir: Path, tracker) -> dict:
    start = begin(cfg, run_dir)
    pairs = full_pairs_stage(cfg, run_dir, sample_and_grade(cfg, run_dir, start))
    return finish(cfg, run_dir, start, train_preference(cfg, run_dir, start.policy, pairs, label="dpo"))
