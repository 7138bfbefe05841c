"""cDPO (Lin et al., 2025): token-level DPO whose rejected tokens are weighted by contrastive estimation.

data -> start policy -> sample K -> grade -> select by answer frequency (§2.2) -> positive / negative SFT models
-> contrastive token weights (§2.3) -> preference training (`preference.loss_mode`: sequence | per_position)
-> evaluate. `cdpo.token_weights=none` trains on the same pairs with weights 1: plain DPO, the ablation baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasontrain.methods.dpo import finish, starting_policy
from reasontrain.stages.critical import contrastive_models, score_stage, select_stage
from reasontrain.stages.data import prepare_data
from reasontrain.stages.evaluate import evaluate_model
from reasontrain.stages.sample import grade_stage, sample_stage
from reasontrain.stages.train_preference import train_preference

TOKEN_WEIGHTS = ("contrastive", "none")


def run(cfg, run_dir: Path, tracker) -> dict:
    if cfg.cdpo.token_weights not in TOKEN_WEIGHTS:
        raise ValueError(f"cdpo.token_weights={cfg.cdpo.token_weights!r} is not one of {TOKEN_WEIGHTS}")
    data_dir = prepare_data(cfg, run_dir)
    policy = starting_policy(cfg, run_dir, data_dir)
    before = evaluate_model(cfg, run_dir, policy, data_dir, "start") if cfg.eval.before else None
    graded = grade_stage(cfg, run_dir, sample_stage(cfg, run_dir, policy, data_dir / f"{cfg.data.train_split}.jsonl"))
    selected = select_stage(cfg, run_dir, graded)
    pairs, critical = selected / "pairs.jsonl", None
    if cfg.cdpo.token_weights == "contrastive":
        pos, neg = contrastive_models(cfg, run_dir, policy, selected)
        scored = score_stage(cfg, run_dir, pairs, policy, pos, neg)
        pairs, critical = scored / "pairs.jsonl", json.loads((scored / "critical_tokens.json").read_text())
    train_dir = train_preference(cfg, run_dir, policy, pairs, label="cdpo")
    result = finish(cfg, run_dir, data_dir, before, train_dir)
    if critical is not None:
        from reasontrain.critical_report import plot_token_weights, report_section

        plot_token_weights(scored / "critical_tokens.png", critical)
        result["figures"] = {"critical_tokens.png": scored / "critical_tokens.png"}
        result["report_sections"] = [report_section(critical)]
        result["extra_metrics"] = {"critical_tokens": {k: v for k, v in critical.items() if k != "examples"}}
    return result
