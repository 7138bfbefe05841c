"""Training arguments shared by every trainer: global batch semantics, precision, DeepSpeed and tracking.

Batch sizes in the config are algorithmic and global; the micro-batch is per device. Gradient accumulation is
derived here, so changing the number of processes leaves the algorithm unchanged.
"""

from __future__ import annotations

from pathlib import Path

from reasontrain.config import LrScheduler, Tracker
from reasontrain.distributed import world_size

CONFIGS_DIR = Path(__file__).resolve().parents[3] / "configs"


class BatchSizeError(ValueError):
    pass


def batch_layout(global_batch: int, micro_batch: int, world_size: int) -> tuple[int, int]:
    """(micro-batch per device, gradient accumulation steps) for `global_batch` examples per optimizer step.

    The micro-batch is a performance knob: where `micro_batch` x `world_size` does not divide the global batch,
    the largest micro-batch below it that does is used, so a recipe runs unchanged on any number of processes.
    Only a global batch that the processes cannot share evenly is an error.
    """
    if global_batch < 1 or micro_batch < 1:
        raise BatchSizeError(f"train.global_batch_size={global_batch} and train.micro_batch_size={micro_batch} "
                             "must be at least 1")
    if global_batch % world_size:
        raise BatchSizeError(f"train.global_batch_size={global_batch} is not a multiple of the {world_size} "
                             "processes; choose a global batch they can share evenly")
    per_rank = global_batch // world_size
    micro = max(m for m in range(1, min(micro_batch, per_rank) + 1) if per_rank % m == 0)
    return micro, per_rank // micro


def micro_batch_and_accumulation(train_cfg) -> tuple[int, int]:
    """`batch_layout` for this run's processes, logged when the micro-batch had to change."""
    import logging

    world = world_size()
    micro, accumulation = batch_layout(train_cfg.global_batch_size, train_cfg.micro_batch_size, world)
    if micro != train_cfg.micro_batch_size:
        logging.getLogger("reasontrain").info(
            "micro-batch %d per device (train.micro_batch_size=%d x %d processes does not divide "
            "train.global_batch_size=%d), %d accumulation steps", micro, train_cfg.micro_batch_size, world,
            train_cfg.global_batch_size, accumulation)
    return micro, accumulation


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
    micro, accumulation = micro_batch_and_accumulation(t)
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        **schedule_kwargs(t),
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=micro,
        gradient_accumulation_steps=accumulation,
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
        report_to=["wandb"] if cfg.tracking.backend == Tracker.wandb else [],
        deepspeed=deepspeed_config_path(cfg.distributed),
        ddp_timeout=int(cfg.distributed.timeout_minutes * 60),
        disable_tqdm=False,
        use_cpu=not _has_accelerator(),
    )


def lr_scheduler_of(opt) -> tuple[str, dict]:
    """transformers' scheduler name and keywords for an optimizer block: its `lr_scheduler`, or cosine ending at
    `min_lr` (`cosine_with_min_lr`) when that is set. Both the Trainer-based and the online trainers use it."""
    name = LrScheduler(opt.lr_scheduler).value
    if opt.min_lr <= 0:
        return name, {}
    if name != LrScheduler.cosine:
        raise ValueError(f"min_lr={opt.min_lr} needs lr_scheduler=cosine, not {name}")
    return "cosine_with_min_lr", {"min_lr": opt.min_lr}


def schedule_kwargs(opt) -> dict:
    """`TrainingArguments` keywords of an optimizer block: lr, schedule, warmup (a share of the steps below 1, a
    step count from 1), weight decay and clipping."""
    name, extra = lr_scheduler_of(opt)
    return dict(learning_rate=opt.lr, lr_scheduler_type=name, warmup_steps=opt.warmup,
                weight_decay=opt.weight_decay, max_grad_norm=opt.max_grad_norm,
                **({"lr_scheduler_kwargs": extra} if extra else {}))


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()
