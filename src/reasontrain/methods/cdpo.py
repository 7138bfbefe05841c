"""cDPO (Lin et al., 2025): token-level DPO whose rejected tokens are weighted by contrastive estimation.

data -> start policy -> sample K -> grade -> select by answer frequency (§2.2) -> positive / negative SFT models
-> contrastive token weights (§2.3) -> preference training (`preference.loss_mode`: sequence | per_position)
-> evaluate. `cdpo.token_weights=none` trains on the same pairs with weights 1: plain DPO, the ablation baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasontrain.config import ConfigError, TokenWeights
from reasontrain.methods.checks import check_preference, check_training
from reasontrain.methods.common import begin, finish, sample_and_grade
from reasontrain.stages.critical import contrastive_models, score_stage, select_stage
from reasontrain.stages.train_preference import train_preference


def validate(cfg) -> None:
    check_preference(cfg)
    c = cfg.cdpo
    if c.token_weights == TokenWeights.contrastive:
        check_training(c.sft_train, "cdpo.sft_train")
    if c.gamma < 0:
        raise ConfigError(f"cdpo.gamma={c.gamma} must be >= 0")
    if not 0 < c.incorrect_top_p <= 1:
        raise ConfigError(f"cdpo.incorrect_top_p={c.incorrect_top_p} must be in (0, 1]")


def run(cfg, run_dir: Path, tracker) -> dict:
    start = begin(cfg, run_dir)
    selected = select_stage(cfg, run_dir, sample_and_grade(cfg, run_dir, start))
    pairs, critical = selected / "pairs.jsonl", None
    if cfg.cdpo.token_weights == TokenWeights.contrastive:
        pos, neg = contrastive_models(cfg, run_dir, start.policy, selected)
        scored = score_stage(cfg, run_dir, pairs, start.policy, pos, neg)
        pairs, critical = scored / "pairs.jsonl", json.loads((scored / "critical_tokens.json").read_text())
    result = finish(cfg, run_dir, start, train_preference(cfg, run_dir, start.policy, pairs, label="cdpo"))
    if critical is not None:
        from reasontrain.critical_report import plot_token_weights, report_section

        plot_token_weights(scored / "critical_tokens.png", critical)
        result["figures"] = {"critical_tokens.png": scored / "critical_tokens.png"}
        result["report_sections"] = [report_section(critical)]
        result["extra_metrics"] = {"critical_tokens": {k: v for k, v in critical.items() if k != "examples"}}
    return result
