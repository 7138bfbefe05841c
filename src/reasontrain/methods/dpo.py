"""DPO on sampled pairs: data -> start policy -> sample K -> grade -> full pairs -> preference training -> eval.

The baseline of RISE: the same pipeline without the self-edited step pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasontrain.config import MaskedThoughtConfig
from reasontrain.stages.data import prepare_data
from reasontrain.stages.evaluate import evaluate_model
from reasontrain.stages.model import starting_model
from reasontrain.stages.pairs import full_pairs_stage
from reasontrain.stages.sample import grade_stage, sample_stage
from reasontrain.stages.train_preference import train_preference
from reasontrain.stages.train_sft import train_sft


def starting_policy(cfg, run_dir: Path, data_dir: Path) -> str:
    """The policy preference and RL recipes start from: the configured model, SFT-trained first if asked."""
    init_dir = starting_model(cfg, run_dir)
    if not cfg.start.sft:
        return init_dir
    folder = train_sft(cfg, run_dir, init_dir, data_dir / f"{cfg.data.train_split}.jsonl", label="start-sft",
                       train_cfg=cfg.start.train, masked_thought=MaskedThoughtConfig())
    return str(folder / "final")


def sampled_pairs(cfg, run_dir: Path):
    """The stages DPO and RISE share: (data folder, starting policy, its metrics, full-solution pairs file)."""
    data_dir = prepare_data(cfg, run_dir)
    policy = starting_policy(cfg, run_dir, data_dir)
    before = evaluate_model(cfg, run_dir, policy, data_dir, "start") if cfg.eval.before else None
    graded = grade_stage(cfg, run_dir, sample_stage(cfg, run_dir, policy, data_dir / f"{cfg.data.train_split}.jsonl"))
    return data_dir, policy, before, full_pairs_stage(cfg, run_dir, graded)


def run(cfg, run_dir: Path, tracker) -> dict:
    data_dir, policy, before, pairs = sampled_pairs(cfg, run_dir)
    train_dir = train_preference(cfg, run_dir, policy, pairs, label="dpo")
    return finish(cfg, run_dir, data_dir, before, train_dir)


def finish(cfg, run_dir: Path, data_dir: Path, before, train_dir: Path) -> dict:
    """Evaluate the trained policy and collect what the report needs."""
    after = evaluate_model(cfg, run_dir, str(train_dir / "final"), data_dir, "final")
    summary = json.loads((train_dir / "stage.json").read_text()).get("result", {})
    history_file = train_dir / "log_history.json"
    return {"before": before, "after": after, "train": summary,
            "log_history": json.loads(history_file.read_text()) if history_file.exists() else [],
            "final": train_dir / "final"}
