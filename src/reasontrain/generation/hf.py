"""Batched sampling with `transformers` `generate`: the default backend, CPU or GPU.

Sampling draws each row's tokens from its own seeded stream (`sample_seed` of the prompt's index in the whole
list and the sample's index), so completions do not depend on the batch size or on how prompts are sharded.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from reasontrain.generation.base import Completion, SamplingParams, cut_at_stop, sample_seed


class _StopOnStrings(StoppingCriteria):
    """Per-row stop once the generated tail contains any stop string."""

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, stop, prompt_len
        self.window = max(len(s) for s in stop) + 8  # tokens are at least one character long

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window):])
        return torch.tensor([any(s in t for s in self.stop) for t in tails], device=input_ids.device)


class _SeededSampler(LogitsProcessor):
    """Temperature and top-p sampling with one random stream per row, run inside greedy decoding: it keeps
    only the drawn token, so the greedy pick is the sample."""

    def __init__(self, uniforms: torch.Tensor, prompt_len: int, temperature: float, top_p: float):
        self.uniforms, self.prompt_len, self.temperature, self.top_p = uniforms, prompt_len, temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        sorted_p, order = probs.sort(dim=-1, descending=True)
        cum = sorted_p.cumsum(-1)
        sorted_p = sorted_p.masked_fill(cum - sorted_p >= self.top_p, 0.0)  # the top token always stays
        cdf = sorted_p.cumsum(-1)
        u = self.uniforms[:, step:step + 1].to(cdf.device) * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u).clamp(max=cdf.shape[1] - 1)
        token = order.gather(1, pick)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token, 0.0)


def _row_uniforms(params: SamplingParams, first_index: int, rows: int, steps: int) -> torch.Tensor:
    """(rows * n, steps) uniforms; row r belongs to prompt `first_index + r // n`, sample `r % n`."""
    out = torch.empty(rows * params.n, steps)
    for r in range(rows * params.n):
        gen = torch.Generator().manual_seed(sample_seed(params.seed, first_index + r // params.n, r % params.n))
        out[r] = torch.rand(steps, generator=gen)
    return out


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], params: SamplingParams, batch_size: int = 64,
             desc: str = "generate", progress: bool = True, first_index: int = 0) -> list[list[Completion]]:
    """`params.n` completions for each prompt, in prompt order. `first_index` is the index of `prompts[0]` in
    the whole list when `prompts` is one rank's shard; sampled completions depend on it."""
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    out: list[list[Completion]] = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, unit="batch"):
            batch = prompts[start:start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            prompt_len = enc.input_ids.shape[1]
            # n rows per prompt, decoded greedily; sampling happens in `_SeededSampler`.
            enc = {k: v.repeat_interleave(params.n, dim=0) for k, v in enc.items()}
            kwargs = dict(max_new_tokens=params.max_new_tokens,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
                          do_sample=False, temperature=None, top_p=None, top_k=None)
            if not params.greedy:
                uniforms = _row_uniforms(params, first_index + start, len(batch), params.max_new_tokens)
                kwargs["logits_processor"] = LogitsProcessorList(
                    [_SeededSampler(uniforms, prompt_len, params.temperature, params.top_p)])
            if params.stop:
                kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnStrings(tokenizer, params.stop, prompt_len)])
            seqs = model.generate(**enc, **kwargs)[:, prompt_len:].tolist()
            for i in range(len(batch)):
                row = []
                for ids in seqs[i * params.n:(i + 1) * params.n]:
                    ended = eos in ids
                    ids = ids[:ids.index(eos)] if ended else [t for t in ids if t != tokenizer.pad_token_id]
                    text, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), params.stop)
                    row.append(Completion(text, "stop" if ended or stopped else "length", len(ids), tuple(ids)))
                out.append(row)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out
