"""The init stage: the starting model as a folder that `from_pretrained` loads, and the starting policy of the
preference and RL methods (that model, SFT-trained first when `start.sft`)."""

from __future__ import annotations

from pathlib import Path

from reasontrain.distributed import is_main_process
from reasontrain.models.loading import build_starting_model, save_for_inference
from reasontrain.stages.base import run_stage, stage_key_from


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


def starting_policy(cfg, run_dir: Path, data_dir: Path) -> str:
    """The policy preference and RL methods start from: the configured model, SFT-trained first if asked."""
    from reasontrain.config import MaskedThoughtConfig
    from reasontrain.stages.train_sft import train_sft

    init_dir = starting_model(cfg, run_dir)
    if not cfg.start.sft:
        return init_dir
    folder = train_sft(cfg, run_dir, init_dir, data_dir / f"{cfg.data.train_split}.jsonl", label="start-sft",
                       train_cfg=cfg.start.train, masked_thought=MaskedThoughtConfig())
    return str(folder / "final")
