"""Rejection-sampling SFT (RFT): the starting policy's own correct samples become its SFT data.

data -> start policy -> sample K -> grade -> keep the correct samples (distinct per question) -> SFT -> evaluate.
"""

from __future__ import annotations

from reasontrain.data.tasks import DataError

from pathlib import Path

from reasontrain.config import MaskedThoughtConfig
from reasontrain.data.selection import correct_samples
from reasontrain.methods.dpo import finish, starting_policy
from reasontrain.stages.base import is_main_process, run_stage, stage_key_from
from reasontrain.stages.data import prepare_data, read_jsonl, write_jsonl
from reasontrain.stages.evaluate import evaluate_model
from reasontrain.stages.sample import grade_stage, sample_stage
from reasontrain.stages.train_sft import train_sft


def correct_samples_stage(cfg, run_dir: Path, graded_path: Path) -> Path:
    """`records.jsonl`: one SFT record per kept correct sample."""
    r = cfg.rft
    key = stage_key_from(cfg, reads=("rft.dedup", "rft.max_per_question"), inputs={"graded": graded_path})

    def run(folder: Path) -> dict:
        rows = read_jsonl(graded_path)
        kept = correct_samples(rows, r.dedup, r.max_per_question)
        if not kept:
            raise DataError(f"rft: no correct sample among {sum(len(x['correct']) for x in rows)} samples in "
                             f"{graded_path}; raise sample.n or sample.temperature, or start from a better policy")
        if is_main_process():
            write_jsonl(folder / "records.jsonl", kept)
        return {"questions": len(rows), "examples": len(kept),
                "questions_with_correct": len({x["id"] for x in kept}),
                "correct_samples": sum(sum(map(bool, x["correct"])) for x in rows)}

    folder, _ = run_stage(run_dir, "rft-select", key, run)
    return folder / "records.jsonl"


def run(cfg, run_dir: Path, tracker) -> dict:
    data_dir = prepare_data(cfg, run_dir)
    policy = starting_policy(cfg, run_dir, data_dir)
    before = evaluate_model(cfg, run_dir, policy, data_dir, "start") if cfg.eval.before else None
    graded = grade_stage(cfg, run_dir, sample_stage(cfg, run_dir, policy, data_dir / f"{cfg.data.train_split}.jsonl"))
    records = correct_samples_stage(cfg, run_dir, graded)
    train_dir = train_sft(cfg, run_dir, policy, records, label="rft", masked_thought=MaskedThoughtConfig())
    return finish(cfg, run_dir, data_dir, before, train_dir)
