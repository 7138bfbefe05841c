"""The shared preference trainer: TRL's DPOTrainer with per-token weights and per-token reference log-probs.

Token weights are an ordinary batch field. They travel from the dataset (`chosen_weights`/`rejected_weights`,
one value per response token) through the collator, which places them on the same (2B, T) grid as the input
ids, to `reasontrain.losses.dpo_loss`. Plain DPO, RISE and cDPO differ only in the weights and loss options.

The reference can be a frozen copy of the policy, the policy with its LoRA adapter disabled, or per-token
log-probs precomputed once and cached on disk (`ReferenceCache`), in which case no reference forward runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from reasontrain.losses import dpo_loss

WEIGHT_COLUMNS = ("chosen_weights", "rejected_weights")
REF_COLUMNS = ("ref_chosen_token_logps", "ref_rejected_token_logps")


@dataclass
class TokenFieldCollator(DataCollatorForPreference):
    """TRL's preference collator, plus per-response-token fields laid out on the (2B, T) input grid.

    Each field pair (chosen, rejected) becomes one tensor whose row i holds 0 over the prompt, the field's
    values over the response tokens, and 0 over padding, truncated exactly like the input ids.
    """

    def _grid(self, examples, chosen_key: str, rejected_key: str, width: int) -> torch.Tensor:
        rows = [[0.0] * len(e["prompt_ids"]) + list(e[chosen_key]) for e in examples]
        rows += [[0.0] * len(e["prompt_ids"]) + list(e[rejected_key]) for e in examples]
        if self.max_length is not None:
            rows = [r[:self.max_length] if self.truncation_mode == "keep_start" else r[-self.max_length:]
                    for r in rows]
        out = torch.zeros(len(rows), width)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.float32)
        return out

    def torch_call(self, examples):
        for e in examples:
            for key, ids in (("chosen", e["chosen_ids"]), ("rejected", e["rejected_ids"])):
                for field in (f"{key}_weights", f"ref_{key}_token_logps"):
                    if field in e and len(e[field]) != len(ids):
                        raise ValueError(f"{field} has {len(e[field])} values for {len(ids)} {key} tokens")
        batch = super().torch_call([{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
                                    for e in examples])
        width = batch["input_ids"].shape[1]
        if WEIGHT_COLUMNS[0] in examples[0]:
            batch["token_weights"] = self._grid(examples, *WEIGHT_COLUMNS, width)
        if REF_COLUMNS[0] in examples[0]:
            batch["ref_token_logps"] = self._grid(examples, *REF_COLUMNS, width)
        return batch


class PreferenceTrainer(DPOTrainer):
    """DPOTrainer whose loss is `dpo_loss` on per-token log-probs, with token weights taken from the batch.

    `loss_mode`, `nll_weight` and `label_smoothing` go to `dpo_loss`; `args.beta` is β. When the training
    dataset already carries `ref_*_token_logps` (see `ReferenceCache`), no reference model is used at all.
    """

    _extra_keys = ("completion_mask", "token_weights", "ref_token_logps", "ref_chosen_logps", "ref_rejected_logps")

    def __init__(self, *args, loss_mode: str = "sequence", nll_weight: float = 0.0,
                 ref_cache_dir: str | None = None, **kwargs):
        self.loss_mode = loss_mode
        self.nll_weight = nll_weight
        self.ref_cache_dir = ref_cache_dir
        self.ref_cache_hit: bool | None = None
        if kwargs.get("data_collator") is None:
            args_obj = kwargs.get("args") if "args" in kwargs else args[1]
            tok = kwargs.get("processing_class")
            kwargs["data_collator"] = TokenFieldCollator(
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                max_length=args_obj.max_length, truncation_mode=args_obj.truncation_mode,
                pad_to_multiple_of=args_obj.pad_to_multiple_of)
        super().__init__(*args, **kwargs)

    # -- data ---------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # Pairs arrive tokenized (see `reasontrain.data.pairs.tokenize_pair`), with weights aligned to those ids.
        if "prompt_ids" in dataset.column_names:
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for col in (*WEIGHT_COLUMNS, *REF_COLUMNS):
            if col not in self._signature_columns:
                self._signature_columns.append(col)

    # -- log-probs ----------------------------------------------------------------------------------------
    def per_token_logps(self, model, inputs) -> torch.Tensor:
        """log p(token t+1 | ≤ t) for every position of the (2B, T) batch, shape (2B, T-1), 0 off the response."""
        mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(mask == 0, -100)
        kwargs = {k: v for k, v in inputs.items() if k not in self._extra_keys}
        out = model(**kwargs, labels=labels, use_cache=False, fused_lm_head=True)
        return out.log_probs[:, -(mask.shape[1] - 1):]

    @torch.no_grad()
    def reference_logps(self, inputs) -> torch.Tensor:
        if "ref_token_logps" in inputs:
            return inputs["ref_token_logps"][:, 1:]
        return self.reference_logps_with(self.ref_model, inputs)

    @torch.no_grad()
    def reference_logps_with(self, model, inputs) -> torch.Tensor:
        """Per-token log-probs under `model`, or under the policy with its adapter disabled when `model` is None."""
        from peft import PeftModel
        from trl.models.utils import disable_gradient_checkpointing
        from trl.trainer.utils import use_adapter

        adapter = contextlib.nullcontext()
        policy = self.accelerator.unwrap_model(self.model)
        if model is None or model is self.model or getattr(model, "module", None) is self.model:
            # The policy serves as its own reference only with its adapter disabled, or before training starts
            # (when reference log-probs are precomputed). `model` may be a DeepSpeed engine around the policy.
            if isinstance(policy, PeftModel):
                adapter = use_adapter(policy, adapter_name="ref" if "ref" in policy.peft_config else None)
            elif self.state.global_step > 0 or model is None:
                raise RuntimeError("no reference: pass a ref_model, use LoRA, or precompute reference log-probs")
            model = self.model if model is None else model
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs), adapter:
            return self.per_token_logps(model, inputs)

    # -- reference cache ----------------------------------------------------------------------------------
    def _precompute_ref_logps(self, dataset, name, batch_size):
        """Per-token reference log-probs of every response token, added as dataset columns.

        Cached on disk under `ref_cache_dir`, keyed by the reference weights and the exact token ids, so a
        second run over the same pairs loads them and runs no reference forward at all.
        """
        from datasets import Dataset, concatenate_datasets

        from reasontrain.trainers.ref_cache import ReferenceCache, dataset_fingerprint

        cache = ReferenceCache(self.ref_cache_dir) if self.ref_cache_dir else None
        key = ReferenceCache.key(self._precompute_model_hash, dataset_fingerprint(dataset))
        cached = cache.load(key) if cache else None
        self.ref_cache_hit = cached is not None
        if cached is None:
            cached = self._reference_columns(dataset, name, batch_size)
            if cache and self.accelerator.is_main_process:
                cache.save(key, cached)
        self.accelerator.wait_for_everyone()
        extra = Dataset.from_dict(cached)
        return concatenate_datasets([dataset.remove_columns([c for c in REF_COLUMNS if c in dataset.column_names]),
                                     extra], axis=1)

    @torch.no_grad()
    def _reference_columns(self, dataset, name, batch_size) -> dict[str, list[list[float]]]:
        from tqdm.auto import tqdm

        columns = {c: [] for c in REF_COLUMNS}
        device = self.accelerator.device
        if self.ref_model is not None:
            model = self.ref_model
        elif self.is_deepspeed_enabled:
            # Before training the policy is not yet placed or gathered (ZeRO-3 shards it): an inference engine is.
            from trl.models import prepare_deepspeed

            if getattr(self, "_precompute_engine", None) is None:
                self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
            model = self._precompute_engine
        else:
            model = self.model.to(device)
        rows = [{k: dataset[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for i in range(len(dataset))]
        for start in tqdm(range(0, len(rows), batch_size), desc=f"reference log-probs ({name})",
                          disable=not self.accelerator.is_main_process):
            chunk = rows[start:start + batch_size]
            batch = {k: v.to(device) for k, v in self.data_collator(chunk).items()}
            logps = self.reference_logps_with(model, batch).float().cpu()
            mask = batch["completion_mask"][:, 1:].bool().cpu()
            n = len(chunk)
            for i, row in enumerate(chunk):
                for offset, col, ids in ((0, REF_COLUMNS[0], row["chosen_ids"]), (n, REF_COLUMNS[1], row["rejected_ids"])):
                    values = logps[offset + i][mask[offset + i]].tolist()
                    columns[col].append(values + [0.0] * (len(ids) - len(values)))  # tokens cut by max_length
        return columns

    # -- loss ---------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        logps = self.per_token_logps(model, inputs)
        ref = self.reference_logps(inputs)
        mask = inputs["completion_mask"][:, 1:]
        weights = inputs.get("token_weights")
        pc, pr = logps.chunk(2)
        rc, rr = ref.to(logps.dtype).chunk(2)
        mc, mr = mask.chunk(2)
        wc, wr = weights[:, 1:].chunk(2) if weights is not None else (None, None)
        loss, metrics = dpo_loss(pc, rc, pr, rr, mc, mr, beta=self.beta, chosen_weights=wc, rejected_weights=wr,
                                 mode=self.loss_mode, nll_weight=self.nll_weight,
                                 label_smoothing=self.label_smoothing)
        for key, value in metrics.items():
            self._metrics[mode][key].append(self.accelerator.gather_for_metrics(value.reshape(1)).mean().item())
        with torch.no_grad():
            self._metrics[mode]["logps/chosen"].append((pc * mc).sum(-1).mean().item())
            self._metrics[mode]["logps/rejected"].append((pr * mr).sum(-1).mean().item())
        if return_outputs:
            return loss, {}
        return loss
