"""RISE: DPO on sampled full-solution pairs plus step pairs whose rejected side has an injected subtle error.

data -> start policy -> sample K -> grade -> full pairs -> split steps / inject errors / filter -> mix ->
preference training (DPO + NLL on chosen) -> evaluate.
"""

from __future__ import annotations

from pathlib import Path

from reasontrain.methods.dpo import finish, sampled_pairs
from reasontrain.stages.base import is_main_process, run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl
from reasontrain.stages.edit import edit_pair_stats, mix_pairs, step_pairs_stage
from reasontrain.stages.train_preference import train_preference


def mix_stage(cfg, run_dir: Path, full_path: Path, edit_path: Path, policy_dir: str) -> tuple[Path, dict]:
    """The training pairs (full + N edit pairs per question) and their statistics."""
    r = cfg.rise
    key = stage_key_from(cfg, reads=("rise.edits_per_question", "rise.use_full_pairs", "seed"),
                         inputs={"full": full_path, "edit": edit_path, "tokenizer": policy_dir})

    def run(folder: Path) -> dict:
        from transformers import AutoTokenizer

        full, edits = read_jsonl(full_path), read_jsonl(edit_path)
        mixed = mix_pairs(full, edits, r.edits_per_question, r.use_full_pairs, cfg.seed)
        if is_main_process():
            write_jsonl(folder / "pairs.jsonl", mixed)
        tokenizer = AutoTokenizer.from_pretrained(str(policy_dir), trust_remote_code=cfg.model.trust_remote_code)
        return {"full": sum(p["kind"] == "full" for p in mixed), "edit": sum(p["kind"] == "edit" for p in mixed),
                "edit_stats": edit_pair_stats(mixed, tokenizer)}

    folder, summary = run_stage(run_dir, "mix", key, run)
    return folder / "pairs.jsonl", summary


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
    data_dir, policy, before, full = sampled_pairs(cfg, run_dir)
    edits = step_pairs_stage(cfg, run_dir, full, policy)
    pairs, summary = mix_stage(cfg, run_dir, full, edits, policy)
    train_dir = train_preference(cfg, run_dir, policy, pairs, label="rise",
                                 edit_token_weight=cfg.rise.edit_token_weight)
    return {**finish(cfg, run_dir, data_dir, before, train_dir), "report_sections": [pairs_section(summary)],
            "extra_metrics": {"pairs": summary}}
