"""The preference training stage: tokenized pairs (with optional token weights) -> PreferenceTrainer -> final/."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from reasontrain.config import LongExamples, LossMode, Reference
from reasontrain.data.pairs import edit_token_weights, tokenize_pair
from reasontrain.models.loading import load_pretrained
from reasontrain.stages.base import distributed_key, run_stage, stage_key_from, train_and_save
from reasontrain.trainers.args import common_training_kwargs

log = logging.getLogger("reasontrain")


class NoPairsLeft(ValueError):
    pass


def tokenize_pairs(rows: list[dict], tokenizer, max_prompt_length: int, append_eos: bool,
                   edit_token_weight: float = 1.0, max_length: int | None = None, long_examples: str = "truncate"):
    """Tokenized rows and the count of dropped pairs per reason.

    Rows may carry `chosen_weights` / `rejected_weights` already aligned to the response tokens, and
    `append_eos` (step pairs end mid-solution, so they get no EOS). With `edit_token_weight` != 1, the tokens
    where an edit pair's chosen and rejected differ get that weight.
    """
    out, dropped, truncated = [], Counter(), 0
    for r in rows:
        if not r["chosen"].strip() or not r["rejected"].strip():
            dropped["empty_response"] += 1
            continue
        if r["chosen"] == r["rejected"]:
            dropped["identical_responses"] += 1
            continue
        ids = tokenize_pair(tokenizer, r["prompt"], r["chosen"], r["rejected"],
                            append_eos=r.get("append_eos", append_eos))
        if len(ids["prompt_ids"]) > max_prompt_length:
            dropped["prompt_too_long"] += 1
            continue
        if max_length is not None and len(ids["prompt_ids"]) + max(len(ids["chosen_ids"]),
                                                                   len(ids["rejected_ids"])) > max_length:
            if long_examples == "skip":
                dropped["pair_too_long"] += 1
                continue
            truncated += 1
        for side in ("chosen", "rejected"):
            if f"{side}_weights" in r:
                if len(r[f"{side}_weights"]) != len(ids[f"{side}_ids"]):
                    raise ValueError(f"pair {r.get('id')}: {side}_weights has {len(r[f'{side}_weights'])} values "
                                     f"for {len(ids[f'{side}_ids'])} tokens")
                ids[f"{side}_weights"] = r[f"{side}_weights"]
        if edit_token_weight != 1.0 and r.get("kind") == "edit":
            ids["chosen_weights"], ids["rejected_weights"] = edit_token_weights(
                ids["chosen_ids"], ids["rejected_ids"], edit_token_weight)
        out.append(ids)
    if out and any("chosen_weights" in x for x in out):
        for x in out:  # weights are a column: pairs without their own get ones
            x.setdefault("chosen_weights", [1.0] * len(x["chosen_ids"]))
            x.setdefault("rejected_weights", [1.0] * len(x["rejected_ids"]))
    if truncated:
        log.warning("%d of %d pairs are longer than train.max_length=%d tokens and will be truncated "
                    "(train.long_examples=skip leaves them out)", truncated, len(rows), max_length)
    return out, dropped, truncated


def train_preference(cfg, run_dir: Path, policy_dir: str, pairs_path: Path, label: str = "dpo",
                     edit_token_weight: float = 1.0) -> Path:
    p = cfg.preference
    key = stage_key_from(cfg, reads=("train", "preference", "model.lora", "model.dtype", "data.max_prompt_length", "seed"),
                         inputs={"policy": policy_dir, "pairs": pairs_path}, edit_token_weight=edit_token_weight,
                         distributed=distributed_key(cfg))

    def run(folder: Path) -> dict:
        from datasets import Dataset
        from trl import DPOConfig

        from reasontrain.stages.data import read_jsonl
        from reasontrain.stages.train_sft import _peft_config
        from reasontrain.trainers.preference import PreferenceTrainer

        model, tokenizer = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
        rows = read_jsonl(pairs_path)
        long_examples = LongExamples(cfg.train.long_examples).value
        tokenized, dropped, truncated = tokenize_pairs(rows, tokenizer, cfg.data.max_prompt_length, p.append_eos,
                                                       edit_token_weight=edit_token_weight,
                                                       max_length=cfg.train.max_length, long_examples=long_examples)
        if dropped:
            log.warning("dropped %d of %d pairs: %s", sum(dropped.values()), len(rows), dict(dropped))
        if not tokenized:
            raise NoPairsLeft(f"no preference pairs left to train on: {len(rows)} pairs in {pairs_path}, "
                              f"dropped {dict(dropped)}")
        reference = Reference(p.reference).value
        if reference == "lora" and not cfg.model.lora.enabled:
            raise ValueError("preference.reference=lora needs model.lora.enabled=true")
        ref_model = None
        if reference == "copy":
            ref_model, _ = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
        ckpt_dir = folder / "checkpoints"
        args = DPOConfig(**common_training_kwargs(cfg, ckpt_dir), beta=p.beta, label_smoothing=p.label_smoothing,
                         max_length=cfg.train.max_length, precompute_ref_log_probs=reference == "cached")
        trainer = PreferenceTrainer(
            model=model, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(tokenized),
            processing_class=tokenizer, peft_config=_peft_config(cfg.model.lora) if reference == "lora" or
            cfg.model.lora.enabled else None, loss_mode=LossMode(p.loss_mode).value, nll_weight=p.nll_weight,
            ref_cache_dir=str(Path(cfg.output_root) / ".ref_cache"))
        out = train_and_save(trainer, tokenizer, folder, cfg.model.lora.enabled)
        return {"pairs": len(tokenized), "dropped": dict(dropped), "truncated_long_pairs": truncated,
                "train_loss": out.training_loss,
                "steps": trainer.state.global_step, "seconds": out.metrics.get("train_runtime"),
                "reference_cache_hit": trainer.ref_cache_hit}

    folder, _ = run_stage(run_dir, label, key, run)
    return folder
