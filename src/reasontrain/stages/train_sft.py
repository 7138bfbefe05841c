"""The SFT stage (plain SFT, Masked Thought, rejection-sampling SFT): train on prompt/completion records."""

from __future__ import annotations

import logging
from pathlib import Path

from reasontrain.config import LongExamples, Noise, to_plain
from reasontrain.data.formats import prompt_key, render_prompt
from reasontrain.models.loading import add_mean_initialized_token, load_pretrained
from reasontrain.stages.base import distributed_key, run_stage, stage_key_from, train_and_save
from reasontrain.trainers.args import common_training_kwargs

log = logging.getLogger("reasontrain")


def build_sft_dataset(records: list[dict], cfg, tokenizer, max_length: int | None = None,
                      long_examples: str = "truncate"):
    """prompt/completion rows; prompts longer than `data.max_prompt_length` tokens are skipped and counted, and
    examples longer than `max_length` tokens (prompt, target and EOS) are counted and truncated by the trainer or,
    with `long_examples="skip"`, left out."""
    from datasets import Dataset

    if records and all("question" not in r and "text" in r for r in records):
        # Pretraining text (the arith `pretrain` split): plain language modelling on the whole document.
        return Dataset.from_list([{"text": r["text"]} for r in records]), {"examples": len(records),
                                                                             "skipped_long_prompt": 0}
    rows, too_long = [], 0
    for r in records:
        prompt = render_prompt(r, cfg.data, tokenizer)
        if len(tokenizer(prompt, add_special_tokens=False).input_ids) > cfg.data.max_prompt_length:
            too_long += 1
            continue
        rows.append({"prompt": prompt, "completion": r["solution"]})
    if too_long:
        log.warning("skipped %d of %d training examples whose prompt exceeds data.max_prompt_length=%d tokens",
                    too_long, len(records), cfg.data.max_prompt_length)
    long = 0
    if max_length is not None and rows:
        lengths = [len(ids) + 1 for ids in tokenizer([r["prompt"] + r["completion"] for r in rows],
                                                     add_special_tokens=False).input_ids]
        over = [n > max_length for n in lengths]
        long = sum(over)
        if long and long_examples == "skip":
            rows = [r for r, x in zip(rows, over) if not x]
        if long:
            log.warning("%s %d of %d training examples longer than train.max_length=%d tokens "
                        "(train.long_examples=%s)", "skipped" if long_examples == "skip" else "truncated", long,
                        len(lengths), max_length, long_examples)
    if not rows:
        raise ValueError(f"no training examples left after skipping {too_long} over-long prompts and {long} "
                         "over-long examples")
    counts = {"examples": len(rows), "skipped_long_prompt": too_long}
    if long:
        counts["skipped_long_example" if long_examples == "skip" else "truncated_long_example"] = long
    return Dataset.from_list(rows), counts


def _peft_config(lora_cfg):
    if not lora_cfg.enabled:
        return None
    from peft import LoraConfig

    targets = list(lora_cfg.target_modules)
    return LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout, task_type="CAUSAL_LM",
                      target_modules=targets[0] if targets == ["all-linear"] else targets)


def build_sft_trainer(cfg, model, tokenizer, dataset, output_dir: Path, train_cfg=None, masked_thought=None,
                      mask_token_id: int | None = None):
    """The stage's `ReasonSFTTrainer` (also what `scripts/bench_sft.py` times), with `cfg.train`/`cfg.masked_thought`
    as defaults for `train_cfg`/`masked_thought`."""
    from trl import SFTConfig

    from reasontrain.trainers.sft import ReasonSFTTrainer

    train_cfg = train_cfg if train_cfg is not None else cfg.train
    mt = masked_thought if masked_thought is not None else cfg.masked_thought
    args = SFTConfig(**common_training_kwargs(cfg, output_dir, train_cfg), max_length=train_cfg.max_length,
                     completion_only_loss="prompt" in dataset.column_names,
                     packing=bool(getattr(train_cfg, "packing", False)))
    return ReasonSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=_peft_config(cfg.model.lora), masked_thought=mt,
                            mask_token_id=mask_token_id, noise_seed=cfg.seed)


def train_sft(cfg, run_dir: Path, init_dir: str, records_path: Path, label: str = "sft", train_cfg=None,
              masked_thought=None) -> Path:
    """Folder `<run>/<label>-<key>/` whose `final/` holds the trained model (LoRA merged).

    `train_cfg` and `masked_thought` default to `cfg.train` and `cfg.masked_thought`.
    """
    train_cfg = train_cfg if train_cfg is not None else cfg.train
    mt = masked_thought if masked_thought is not None else cfg.masked_thought
    # `train_cfg` and `mt` may come from other sections (start.train, cdpo.sft_train), so they enter as values.
    key = stage_key_from(cfg, reads=("model.lora", "model.dtype", "seed"),
                         inputs={"init": init_dir, "data": records_path}, train=to_plain(train_cfg),
                         masked_thought=to_plain(mt), prompt=prompt_key(cfg.data), distributed=distributed_key(cfg))

    def run(folder: Path) -> dict:
        from reasontrain.stages.data import read_jsonl

        model, tokenizer = load_pretrained(str(init_dir), cfg.model.dtype, cfg.model.trust_remote_code)
        mask_id = None
        if mt.max_rate > 0 and mt.noise == Noise.mask_token:
            mask_id = add_mean_initialized_token(model, tokenizer, mt.mask_token)
        dataset, counts = build_sft_dataset(read_jsonl(records_path), cfg, tokenizer, train_cfg.max_length,
                                            LongExamples(train_cfg.long_examples).value)
        trainer = build_sft_trainer(cfg, model, tokenizer, dataset, folder / "checkpoints", train_cfg, mt, mask_id)
        out = train_and_save(trainer, tokenizer, folder, cfg.model.lora.enabled)
        return {**counts, "train_loss": out.training_loss, "steps": trainer.state.global_step,
                "seconds": out.metrics.get("train_runtime")}

    folder, _ = run_stage(run_dir, label, key, run)
    return folder
