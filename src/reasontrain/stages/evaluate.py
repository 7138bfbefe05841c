"""The evaluate stage: every eval split of one model, written as `metrics.json` plus per-problem JSONL."""

from __future__ import annotations

import json
from pathlib import Path

from reasontrain.data.formats import pick_shots, prompt_key
from reasontrain.distributed import is_main_process
from reasontrain.evaluation import evaluate_split
from reasontrain.models.loading import load_pretrained
from reasontrain.stages.base import run_stage, stage_key_from
from reasontrain.stages.data import eval_splits, read_jsonl, skipped_records, write_jsonl


def evaluate_model(cfg, run_dir: Path, model_dir: str, data_dir: Path, label: str) -> dict:
    """{split: metrics} for the model in `model_dir`; cached under `<run>/eval-<label>-<key>/`."""
    splits = eval_splits(cfg)
    key = stage_key_from(cfg, reads=("eval", "generation", "model.dtype", "data.on_long_prompt", "seed"),
                         inputs={"model": model_dir, "data": data_dir}, splits=splits, prompt=prompt_key(cfg.data))

    def run(folder: Path) -> dict:
        model, tokenizer = load_pretrained(str(model_dir), cfg.model.dtype, cfg.model.trust_remote_code)
        import torch

        if torch.cuda.is_available():
            model = model.cuda()
        shots = []
        if cfg.data.num_shots > 0:
            shots = pick_shots(read_jsonl(data_dir / f"{cfg.data.train_split}.jsonl"), cfg.data.num_shots, cfg.seed)
        results = {}
        for split in splits:
            records = read_jsonl(data_dir / f"{split}.jsonl")
            metrics, rows = evaluate_split(model, tokenizer, records, cfg, split, model_path=str(model_dir),
                                           shots=shots)
            bad_gold = skipped_records(data_dir, split)
            if bad_gold:  # pass@1 is over the problems that can be graded; these could not
                metrics["skipped"] = {**metrics.get("skipped", {}), **bad_gold}
            results[split] = metrics
            if is_main_process():
                write_jsonl(folder / f"{split}.predictions.jsonl", rows)
        if is_main_process():
            (folder / "metrics.json").write_text(json.dumps(results, indent=2))
        return results

    _, results = run_stage(run_dir, f"eval-{label}", key, run)
    return results
