"""RISE: DPO on sampled full-solution pairs plus step pairs whose rejected side has an injected subtle error.

data -> start policy -> sample K -> grade -> full pairs -> split steps / inject errors / filter -> mix ->
preference training (DPO + NLL on chosen) -> evaluate.
"""

from __future__ import annotations

from pathlib import Path

from reasontrain.config import ConfigError
from reasontrain.methods.checks import check_preference
from reasontrain.methods.common import begin, finish, sample_and_grade
from reasontrain.stages.edit import step_pairs_stage
from reasontrain.stages.pairs import full_pairs_stage, mix_stage
from reasontrain.stages.train_preference import train_preference


def validate(cfg) -> None:
    check_preference(cfg)
    r = cfg.rise
    if r.edits_per_question < 0:
        raise ConfigError(f"rise.edits_per_question={r.edits_per_question} must be >= 0")
    if not r.error_types:
        raise ConfigError("rise.error_types is empty: list at least one error type to inject")
    if r.max_edit_chars < 1 or not 0 < r.max_edit_ratio <= 1:
        raise ConfigError(f"rise.max_edit_chars={r.max_edit_chars} must be >= 1 and rise.max_edit_ratio="
                          f"{r.max_edit_ratio} in (0, 1]")
    if r.edit_token_weight <= 0:
        raise ConfigError(f"rise.edit_token_weight={r.edit_token_weight} must be > 0")


def pairs_section(summary: dict) -> str:
    s = summary.get("edit_stats") or {}
    lines = [f"## Training pairs\n\n{summary.get('full', 0)} full-solution pairs, {summary.get('edit', 0)} "
             "error-injected step pairs."]
    if s.get("edit_pairs"):
        final = (f"{100 * s['changes_final_answer']:.0f}% of the {s['answer_step_edits']} edits of the answer step "
                 "change the final answer" if s.get("changes_final_answer") is not None else
                 "no edit touched the answer step")
        lines.append(f"Edit pairs differ in a median of {s['median_differing_tokens']} tokens "
                     f"(mean {s['mean_differing_tokens']}); {100 * s['changes_step_result']:.0f}% change the "
                     f"step's result; {final}.")
    return "\n\n".join(lines)


def run(cfg, run_dir: Path, tracker) -> dict:
    start = begin(cfg, run_dir)
    full = full_pairs_stage(cfg, run_dir, sample_and_grade(cfg, run_dir, start))
    edits = step_pairs_stage(cfg, run_dir, full, start.policy)
    pairs, summary = mix_stage(cfg, run_dir, full, edits, start.policy)
    train_dir = train_preference(cfg, run_dir, start.policy, pairs, label="rise",
                                 edit_token_weight=cfg.rise.edit_token_weight)
    return {**finish(cfg, run_dir, start, train_dir), "report_sections": [pairs_section(summary)],
            "extra_metrics": {"pairs": summary}}
