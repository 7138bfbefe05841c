"""The shared preference trainer: TRL's DPOTrainer with per-token weights and per-token reference log-probs.

Token weights are an ordinary batch field. They travel from the dataset (`chosen_weights`/`rejected_weights`,
one value per response token) through the collator, which places them on the same (2B, T) grid as the input
ids, to `reasontrain.losses.dpo_loss`. Plain DPO, RISE and cDPO differ only in the weights and loss options.

The reference can be a frozen copy of the policy, the policy with its LoRA adapter disabled, or per-token
log-probs precomputed once and cached on disk (`ReferenceCache`), in which case no reference forward runs.

Batches put each pair in one row (`SharedPrefixCollator`): the prompt, and whatever start of the response chosen
and rejected have in common, is computed once for both, by the policy and by the reference. The log-probs are
gathered back onto the plain (2B, T) grid of TRL's layout (`TokenFieldCollator`), so the loss is unchanged.
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


def _truncate(prompt: list[int], response: list[int], max_length: int | None, mode: str) -> tuple[list[int], int, int]:
    """(row ids, index of the first response token in the row, index of the first kept response token in `response`).

    Exactly TRL's rule: the row prompt + response is cut to its first (keep_start) or last (keep_end) max_length ids.
    """
    ids = prompt + response
    if max_length is None or len(ids) <= max_length:
        return ids, len(prompt), 0
    if mode == "keep_start":
        return ids[:max_length], min(len(prompt), max_length), 0
    if mode == "keep_end":
        cut = len(ids) - max_length
        start = max(len(prompt) - cut, 0)
        return ids[cut:], start, len(response) - (max_length - start)
    raise ValueError(f"Unsupported truncation mode: {mode}, expected 'keep_start' or 'keep_end'")


def _place(spans: list[tuple[int, int, int, list[float] | None]], shape: tuple[int, int],
           dtype=torch.float32) -> torch.Tensor:
    """A zero tensor of `shape` with spans written in: (row, first column, length, values or None for ones).

    One flat index assignment for the whole batch instead of one tensor per row.
    """
    out = torch.zeros(shape, dtype=dtype)
    spans = [s for s in spans if s[2] > 0]
    if not spans:
        return out
    rows, cols, lens = (torch.tensor(v) for v in zip(*(s[:3] for s in spans)))
    starts = rows * shape[1] + cols
    # index of every element: its span's start plus its offset inside the span
    offsets = torch.arange(int(lens.sum())) - torch.repeat_interleave(lens.cumsum(0) - lens, lens)
    index = torch.repeat_interleave(starts, lens) + offsets
    if all(s[3] is None for s in spans):
        out.view(-1)[index] = 1
    else:
        values = [v for _, _, n, vals in spans for v in (vals[:n] if vals is not None else [1.0] * n)]
        out.view(-1)[index] = torch.tensor(values, dtype=dtype)
    return out


def _check_field_lengths(examples) -> None:
    for e in examples:
        for key in ("chosen", "rejected"):
            n = len(e[f"{key}_ids"])
            for field in (f"{key}_weights", f"ref_{key}_token_logps"):
                if field in e and len(e[field]) != n:
                    raise ValueError(f"{field} has {len(e[field])} values for {n} {key} tokens")


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


def _grid_fields(examples, rows: list[tuple[list[int], int, int]], width: int) -> dict[str, torch.Tensor]:
    """Token weights and cached reference log-probs on the (2B, T) grid of the plain layout: row r holds the field's
    values at the row positions of its kept response tokens, 0 elsewhere (rows: chosen rows, then rejected rows)."""
    n = len(examples)
    out = {}
    for name, columns in (("token_weights", WEIGHT_COLUMNS), ("ref_token_logps", REF_COLUMNS)):
        if columns[0] not in examples[0]:
            continue
        spans = []
        for r, (ids, start, first) in enumerate(rows):
            values = examples[r % n][columns[r // n]]
            spans.append((r, start, len(ids) - start, list(values[first:first + len(ids) - start])))
        out[name] = _place(spans, (2 * n, width))
    return out


@dataclass
class TokenFieldCollator(DataCollatorForPreference):
    """TRL's preference collator, plus per-response-token fields laid out on the (2B, T) input grid.

    Each field pair (chosen, rejected) becomes one tensor whose row i holds 0 over the prompt, the field's
    values over the response tokens, and 0 over padding, truncated exactly like the input ids.
    """

    def torch_call(self, examples):
        _check_field_lengths(examples)
        batch = super().torch_call([{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
                                    for e in examples])
        rows = [_truncate(e["prompt_ids"], e[key], self.max_length, self.truncation_mode)
                for key in ("chosen_ids", "rejected_ids") for e in examples]
        batch.update(_grid_fields(examples, rows, batch["input_ids"].shape[1]))
        return batch


def _common_prefix(a: list[int], b: list[int], start_a: int, start_b: int) -> int:
    """Length of the common prefix of two rows, counting a position only if it is prompt in both or response in both."""
    n = 0
    for x, y in zip(a, b):
        if x != y or (n >= start_a) != (n >= start_b):
            break
        n += 1
    return n


@dataclass
class SharedPrefixCollator(TokenFieldCollator):
    """One row per pair: the prefix that chosen and rejected share is computed once, then both continuations.

    Row i is [X[:s], X[s:], Y[s:]] with X = prompt + chosen and Y = prompt + rejected (truncated as TRL does) and s
    one less than their common prefix (the prompt, and for edit pairs the unchanged start of the response): the last
    shared token opens both branches, since its output predicts a different next token in each. Position ids restart
    at s in the rejected branch, and `segment_ids` (0 shared, 1 chosen, 2 rejected, -1 padding) gives the attention
    rule: a token sees earlier tokens of the shared prefix and of its own branch. Causal attention makes every
    hidden state equal to the one of the plain (2B, T) layout, so the log-probs are the same, from about
    B·(|X| + |Y| − s) positions instead of 2B·T.

    `shift_labels` holds, at each position, the next token of its own branch when that token is a response token;
    `logp_index` maps each cell of the plain layout's shifted (2B, T-1) grid to the flat (B·L) position that scores
    it. `completion_mask`, `token_weights` and `ref_token_logps` keep the plain layout's (2B, T) grid, so the loss
    sees exactly what it saw before.
    """

    def torch_call(self, examples):
        _check_field_lengths(examples)
        n = len(examples)
        xs = [_truncate(e["prompt_ids"], e["chosen_ids"], self.max_length, self.truncation_mode) for e in examples]
        ys = [_truncate(e["prompt_ids"], e["rejected_ids"], self.max_length, self.truncation_mode) for e in examples]
        width = _round_up(max(len(r[0]) for r in xs + ys), self.pad_to_multiple_of)
        shared = [max(_common_prefix(x, y, sx, sy) - 1, 0) for (x, sx, _), (y, sy, _) in zip(xs, ys)]
        length = _round_up(max(len(x) + len(y) - s for (x, _, _), (y, _, _), s in zip(xs, ys, shared)),
                           self.pad_to_multiple_of)
        if length >= 2 * width:
            # Nothing worth sharing (e.g. keep_end cut the two prompts differently): the plain layout is cheaper.
            return super().torch_call(examples)

        input_ids = torch.full((n, length), self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((n, length), dtype=torch.long)
        segment_ids = torch.full((n, length), -1, dtype=torch.long)
        shift_labels = torch.full((n, length), -100, dtype=torch.long)
        logp_index = torch.zeros((2 * n, width - 1), dtype=torch.long)
        for i, ((x, sx, _), (y, sy, _), s) in enumerate(zip(xs, ys, shared)):
            nx, ny = len(x), len(y)
            input_ids[i, :nx + ny - s] = torch.tensor(x + y[s:])
            position_ids[i, :nx] = torch.arange(nx)
            position_ids[i, nx:nx + ny - s] = torch.arange(s, ny)
            segment_ids[i, :s], segment_ids[i, s:nx], segment_ids[i, nx:nx + ny - s] = 0, 1, 2
            # chosen: position t (< nx) scores x[t + 1] when that is a response token (never token 0)
            a = max(sx, 1)
            if a < nx:
                shift_labels[i, a - 1:nx - 1] = torch.tensor(x[a:])
                logp_index[i, a - 1:nx - 1] = i * length + torch.arange(a - 1, nx - 1)
            # rejected: position u of y sits at u (shared, u < s) or at nx + u - s (its branch)
            b = max(sy, 1)
            if b < ny:
                u0 = max(b - 1, s)  # labels on shared positions are the chosen ones, equal by construction
                if u0 < ny - 1:
                    shift_labels[i, nx + u0 - s:nx + ny - 1 - s] = torch.tensor(y[u0 + 1:])
                u = torch.arange(b - 1, ny - 1)
                logp_index[n + i, b - 1:ny - 1] = i * length + torch.where(u < s, u, nx + u - s)
        rows = xs + ys
        completion_mask = _place([(r, start, len(ids) - start, None) for r, (ids, start, _) in enumerate(rows)],
                                 (2 * n, width), dtype=torch.long)
        batch = {"input_ids": input_ids, "position_ids": position_ids, "segment_ids": segment_ids,
                 "shift_labels": shift_labels, "logp_index": logp_index, "completion_mask": completion_mask}
        batch.update(_grid_fields(examples, rows, width))
        return batch


def shared_prefix_attention_mask(segment_ids: torch.Tensor, dtype: torch.dtype, boolean: bool) -> torch.Tensor:
    """(B, 1, L, L) mask of `SharedPrefixCollator`'s rule: causal, and a key is seen if it is shared or in the
    query's own branch. Padding queries see the shared prefix and earlier padding (never an empty row, so no NaN).
    Boolean (True = attend) for SDPA, additive (0 / dtype min) for eager attention."""
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    q, k = segment_ids[:, :, None], segment_ids[:, None, :]
    allowed = (causal & ((k == 0) | (k == q)))[:, None]
    if boolean:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device).masked_fill(~allowed,
                                                                                            torch.finfo(dtype).min)


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
        model = kwargs.get("model", args[0] if args else None)
        config = getattr(model, "config", None)
        self.attn_implementation = getattr(config, "_attn_implementation", None)
        # The shared-prefix layout needs a custom 4D attention mask, which SDPA and eager attention take as is; it
        # would replace a sliding-window mask, so models with sliding-window layers keep the plain layout.
        sliding = ("sliding_attention" in (getattr(config, "layer_types", None) or ())
                   or bool(getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None)))
        shared_prefix = self.attn_implementation in ("sdpa", "eager") and not sliding
        if kwargs.get("data_collator") is None:
            args_obj = kwargs.get("args") if "args" in kwargs else args[1]
            tok = kwargs.get("processing_class")
            collator = SharedPrefixCollator if shared_prefix else TokenFieldCollator
            kwargs["data_collator"] = collator(
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
        """log p(token t+1 | ≤ t) for every position of the (2B, T) batch, shape (2B, T-1), 0 off the response.

        Either layout gives this same grid: the plain one (`TokenFieldCollator`, 2B padded rows) or the shared-prefix
        one (`SharedPrefixCollator`, one row per pair), whose log-probs are gathered back onto the grid.
        """
        mask = inputs["completion_mask"]
        if "logp_index" in inputs:
            segments = inputs["segment_ids"]
            attention = shared_prefix_attention_mask(segments, torch.float32,
                                                     boolean=self.attn_implementation != "eager")
            out = model(input_ids=inputs["input_ids"], attention_mask=attention, position_ids=inputs["position_ids"],
                        shift_labels=inputs["shift_labels"], use_cache=False, fused_lm_head=True)
            flat = out.log_probs[:, -segments.shape[1]:].reshape(-1)
            return torch.where(mask[:, 1:].bool(), flat[inputs["logp_index"]], 0.0)
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
        cached = cache.load(key, expected_rows=len(dataset)) if cache else None
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
