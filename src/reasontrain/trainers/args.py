"""Training arguments shared by every trainer: global batch semantics, precision, DeepSpeed and tracking.

Batch sizes in the config are algorithmic and global; the micro-batch is per device. Gradient accumulation is
derived here, so changing the number of processes leaves the algorithm unchanged.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parents[3] / "configs"


class BatchSizeError(ValueError):
    pass


def gradient_accumulation_steps(global_batch: int, micro_batch: int, world_size: int) -> int:
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise BatchSizeError(
            f"train.global_batch_size={global_batch} is not a multiple of train.micro_batch_size={micro_batch} "
            f"x {world_size} processes")
    return global_batch // per_step


def world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def deepspeed_config_path(dist_cfg) -> str | None:
    if dist_cfg.deepspeed_config is None:
        return None
    path = Path(dist_cfg.deepspeed_config)
    if not path.is_absolute():
        path = CONFIGS_DIR / "distributed" / path
    if not path.exists():
        raise FileNotFoundError(f"DeepSpeed config not found: {path}")
    return str(path)


def common_training_kwargs(cfg, output_dir: str | Path, train_cfg=None) -> dict:
    """Keyword arguments for any `transformers.TrainingArguments` subclass (SFTConfig, DPOConfig, ...).

    `train_cfg` defaults to `cfg.train`; stages that train with other settings (the starting SFT) pass theirs.
    """
    t = train_cfg if train_cfg is not None else cfg.train
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.lr,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(t.global_batch_size, t.micro_batch_size,
                                                                world_size()),
        bf16=t.bf16,
        fp16=False,
        gradient_checkpointing=t.gradient_checkpointing,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=["wandb"] if getattr(cfg.tracking.backend, "value", cfg.tracking.backend) == "wandb" else [],
        deepspeed=deepspeed_config_path(cfg.distributed),
        ddp_timeout=int(cfg.distributed.timeout_minutes * 60),
        disable_tqdm=False,
        use_cpu=not _has_accelerator(),
    )


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()
