"""SFT and Masked Thought: data -> init -> evaluate start -> SFT (with optional input noise) -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

from reasontrain.stages.data import prepare_data
from reasontrain.stages.evaluate import evaluate_model
from reasontrain.stages.model import starting_model
from reasontrain.stages.train_sft import train_sft


def run(cfg, run_dir: Path, tracker) -> dict:
    data_dir = prepare_data(cfg, run_dir)
    init_dir = starting_model(cfg, run_dir)
    before = evaluate_model(cfg, run_dir, init_dir, data_dir, "start") if cfg.eval.before else None
    label = "masked_thought" if cfg.masked_thought.max_rate > 0 else "sft"
    train_dir = train_sft(cfg, run_dir, init_dir, data_dir / f"{cfg.data.train_split}.jsonl", label=label)
    after = evaluate_model(cfg, run_dir, str(train_dir / "final"), data_dir, "final")
    summary = json.loads((train_dir / "stage.json").read_text()).get("result", {})
    history_file = train_dir / "log_history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    return {"before": before, "after": after, "train": summary, "log_history": history,
            "final": train_dir / "final"}
