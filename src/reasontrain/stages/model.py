"""The init stage: the starting policy as a folder that `from_pretrained` loads."""

from __future__ import annotations

from pathlib import Path

from reasontrain.models.loading import build_starting_model, save_for_inference
from reasontrain.stages.base import is_main_process, run_stage, stage_key_from


def starting_model(cfg, run_dir: Path) -> str:
    """A local folder (the built tiny model) or the configured path / Hub id of a pretrained model."""
    if cfg.model.path is not None:
        return cfg.model.path

    def build(folder: Path) -> dict:
        model, tokenizer = build_starting_model(cfg.model, cfg.seed)
        if is_main_process():
            save_for_inference(model, tokenizer, folder)
        return {"parameters": sum(p.numel() for p in model.parameters())}

    folder, _ = run_stage(run_dir, "init", stage_key_from(cfg, reads=("model", "seed")), build)
    return str(folder)
