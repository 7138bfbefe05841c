"""Evaluate a checkpoint (local folder or Hub id) on the configured benchmark, with no training."""

from __future__ import annotations

from pathlib import Path

from reasontrain.stages.data import prepare_data
from reasontrain.stages.evaluate import evaluate_model
from reasontrain.stages.model import starting_model


def validate(cfg) -> None:
    """Nothing beyond the checks every method gets."""


def run(cfg, run_dir: Path, tracker) -> dict:
    data_dir = prepare_data(cfg, run_dir, with_train=False)
    after = evaluate_model(cfg, run_dir, starting_model(cfg, run_dir), data_dir, "model")
    return {"before": None, "after": after, "train": None, "log_history": [], "final": None}
