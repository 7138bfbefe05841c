"""RISE: DPO on sampled full-solution pairs plus step pairs whose rejected side has an injected subtle error.

data -> start policy -> sample K -> grade -> full pairs -> split steps / inject errors / filter -> mix ->
preference training (DPO + NLL on chosen) -> evaluate.
"""

from __future__ import annotations

from pathlib import Path

from reasontrain.methods.dpo import finish, sampled_pairs
from reasontrain.stages.base import is_main_process, run_stage
from reasontrain.stages.data import read_jsonl, write_jsonl
from reasontrain.stages.edit import mix_pairs, step_pairs_stage
from reasontrain.stages.train_preference import train_preference


def mix_stage(cfg, run_dir: Path, full_path: Path, edit_path: Path) -> Path:
    r = cfg.rise
    key = {"full": str(full_path), "edit": str(edit_path), "n": r.edits_per_question, "use_full": r.use_full_pairs,
           "seed": cfg.seed}

    def run(folder: Path) -> dict:
        full, edits = read_jsonl(full_path), read_jsonl(edit_path)
        mixed = mix_pairs(full, edits, r.edits_per_question, r.use_full_pairs, cfg.seed)
        if is_main_process():
            write_jsonl(folder / "pairs.jsonl", mixed)
        return {"full": sum(p["kind"] == "full" for p in mixed), "edit": sum(p["kind"] == "edit" for p in mixed)}

    folder, _ = run_stage(run_dir, "mix", key, run)
    return folder / "pairs.jsonl"


def run(cfg, run_dir: Path, tracker) -> dict:
    data_dir, policy, before, full = sampled_pairs(cfg, run_dir)
    edits = step_pairs_stage(cfg, run_dir, full, policy)
    pairs = mix_stage(cfg, run_dir, full, edits)
    train_dir = train_preference(cfg, run_dir, policy, pairs, label="rise",
                                 edit_token_weight=cfg.rise.edit_token_weight)
    return finish(cfg, run_dir, data_dir, before, train_dir)
