"""Batched sampling with `transformers` `generate`: the default backend, CPU or GPU."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from reasontrain.generation.base import Completion, SamplingParams, cut_at_stop


class _StopOnStrings(StoppingCriteria):
    """Per-row stop once the generated tail contains any stop string."""

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, stop, prompt_len
        self.window = max(len(s) for s in stop) + 8  # tokens are at least one character long

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window):])
        return torch.tensor([any(s in t for s in self.stop) for t in tails], device=input_ids.device)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], params: SamplingParams, batch_size: int = 64,
             desc: str = "generate", progress: bool = True) -> list[list[Completion]]:
    """`params.n` completions for each prompt, in prompt order."""
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
            kwargs = dict(max_new_tokens=params.max_new_tokens, num_return_sequences=params.n,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
            if params.greedy:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
                torch.manual_seed(params.seed + start)  # reproducible per batch, whatever ran before
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
