"""Batched sampling with `transformers` models and a KV-cached decoding loop: the default backend, CPU or GPU.

Sampling draws each row's tokens from its own seeded stream (`sample_seed` of the prompt's index in the whole
list and the sample's index), so completions do not depend on the batch size or on how prompts are sharded.

The loop computes what greedy `model.generate` computes (prefill the left-padded prompts, then one token per row
and step against the KV cache, which is always on whatever the checkpoint's config says), and skips work it does
not need: prompts are sorted by length so a batch carries little padding, each prompt is prefilled once for its
n samples, finished rows leave the batch (and the cache), and stop strings are checked only on rows whose new
token can end one.
"""

from __future__ import annotations

import inspect
import weakref

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor
from transformers.cache_utils import DynamicLayer

from reasontrain.generation.base import Completion, SamplingParams, cut_at_stop, sample_seed


def sample_tokens(scores: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row of `scores` (rows, vocab): temperature and top-p sampling by inverting the CDF of the
    sorted distribution at the row's uniform in [0, 1)."""
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    cum = sorted_p.cumsum(-1)
    sorted_p = sorted_p.masked_fill(cum - sorted_p >= top_p, 0.0)  # the top token always stays
    cdf = sorted_p.cumsum(-1)
    u = uniforms.view(-1, 1).to(cdf.device) * cdf[:, -1:]
    pick = torch.searchsorted(cdf, u).clamp(max=cdf.shape[1] - 1)
    return order.gather(1, pick).squeeze(1)


class _SeededSampler(LogitsProcessor):
    """`sample_tokens` as a logits processor for greedy `model.generate`: it keeps only the drawn token, so the
    greedy pick is the sample. `uniforms` is (rows, steps)."""

    def __init__(self, uniforms: torch.Tensor, prompt_len: int, temperature: float, top_p: float):
        self.uniforms, self.prompt_len, self.temperature, self.top_p = uniforms, prompt_len, temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        token = sample_tokens(scores, self.uniforms[:, step], self.temperature, self.top_p)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token.view(-1, 1), 0.0)


def _row_uniforms(params: SamplingParams, first_index: int, rows: int, steps: int) -> torch.Tensor:
    """(rows * n, steps) uniforms; row r belongs to prompt `first_index + r // n`, sample `r % n`."""
    out = torch.empty(rows * params.n, steps)
    gen = torch.Generator()
    for r in range(rows * params.n):
        gen.manual_seed(sample_seed(params.seed, first_index + r // params.n, r % params.n))
        torch.rand(steps, generator=gen, out=out[r])
    return out


# Finished rows leave the batch once they are this share of it: compacting copies the cache, running a finished
# row costs one token's compute.
_COMPACT_AT = 1 / 8

# Per tokenizer and (vocabulary size, stop strings): which token ids can complete a stop string.
_STOP_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _stop_candidates(tokenizer, stop: tuple[str, ...], vocab_size: int) -> torch.Tensor:
    """(vocab_size,) bool: the tokens after which a stop string can newly appear in the decoded text.

    A stop string newly appears only when the last token's text holds its last character. A token's text is
    taken in context (after a plain letter, so a leading space that decoding strips on its own stays); tokens
    whose text is empty or a partial UTF-8 byte sequence, or that cannot be decoded, always count."""
    key = (vocab_size, stop)
    tables = _STOP_TABLES.setdefault(tokenizer, {})
    if key not in tables:
        ends = {s[-1] for s in stop if s}
        anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        head = tokenizer.decode(anchor)
        texts = tokenizer.batch_decode([anchor + [t] for t in range(vocab_size)])
        table = torch.ones(vocab_size, dtype=torch.bool)
        for t, text in enumerate(texts):
            if text.startswith(head):
                text = text[len(head):]
                table[t] = not text or "\ufffd" in text or any(c in text for c in ends)
        tables[key] = table
    return tables[key]


class _StopStrings:
    """Per-row stop once the generated tail contains any stop string; only candidate rows are decoded."""

    def __init__(self, tokenizer, stop: tuple[str, ...], vocab_size: int):
        self.tokenizer, self.stop = tokenizer, stop
        self.candidates = _stop_candidates(tokenizer, stop, vocab_size)
        self.window = max(len(s) for s in stop) + 8  # tokens are at least one character long

    def hits(self, tokens: torch.Tensor, rows: torch.Tensor, step: int, new: torch.Tensor) -> torch.Tensor:
        """Which of `rows` (ids into `tokens`, the generated ids so far) now end in a stop string."""
        hit = torch.zeros(len(rows), dtype=torch.bool)
        known = new < len(self.candidates)  # ids past the tokenizer's vocabulary are always checked
        check = (~known | self.candidates[new.where(known, 0)]).nonzero().squeeze(1)
        if len(check):
            tails = self.tokenizer.batch_decode(tokens[rows[check], max(0, step + 1 - self.window):step + 1].tolist())
            hit[check] = torch.tensor([any(s in t for s in self.stop) for t in tails])
        return hit


def _accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class _GrowingLayer(DynamicLayer):
    """A full-attention cache layer that writes each step's keys and values into room reserved after the prefill,
    where `DynamicLayer` concatenates: a step then costs its own token, not a copy of the whole cache."""

    @classmethod
    def from_layer(cls, layer: DynamicLayer, room: int) -> "_GrowingLayer":
        new = cls()
        new.dtype, new.device, new.is_initialized = layer.dtype, layer.device, True
        b, h, t, d = layer.keys.shape
        new.length = t
        new.k_buf, new.v_buf = (x.new_empty(b, h, t + room, d) for x in (layer.keys, layer.values))
        new.k_buf[:, :, :t], new.v_buf[:, :, :t] = layer.keys, layer.values
        new._views()
        return new

    def _views(self) -> None:
        self.keys, self.values = self.k_buf[:, :, :self.length], self.v_buf[:, :, :self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        t, n = self.length, key_states.shape[-2]
        if t + n > self.k_buf.shape[2]:  # past the reserved room: fall back to growing by concatenation
            self.k_buf = torch.cat([self.k_buf[:, :, :t], key_states], dim=-2)
            self.v_buf = torch.cat([self.v_buf[:, :, :t], value_states], dim=-2)
        else:
            self.k_buf[:, :, t:t + n], self.v_buf[:, :, t:t + n] = key_states, value_states
        self.length = t + n
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        def select(buf):  # copies the filled part only, not the reserved room
            out = buf.new_empty(len(indices), *buf.shape[1:])
            out[:, :, :self.length] = buf[:, :, :self.length][indices]
            return out

        self.k_buf, self.v_buf = select(self.k_buf), select(self.v_buf)
        self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.k_buf, self.v_buf = (x.repeat_interleave(repeats, dim=0) for x in (self.k_buf, self.v_buf))
        self._views()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the generation cache is never cropped")


def _reserve(cache, room: int) -> None:
    """Give every plain full-attention layer of `cache` room for `room` more tokens (other layer kinds, e.g.
    sliding-window ones, keep their own update)."""
    for i, layer in enumerate(getattr(cache, "layers", ())):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.dim() == 4:
            cache.layers[i] = _GrowingLayer.from_layer(layer, room)


def _decode_batch(model, prompt_ids: list[list[int]], params: SamplingParams, uniforms: torch.Tensor | None,
                  pad: int, eos: int | None, stopper: _StopStrings | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated ids (rows * n, max_new_tokens) and each row's length, rows in prompt-major order."""
    device = next(model.parameters()).device
    n, steps = params.n, params.max_new_tokens
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompt_ids):  # left padding: every row's next token goes in the last column
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
    cache, logits = out.past_key_values, out.logits[:, -1].float()
    _reserve(cache, steps)
    if n > 1:  # the n samples of a prompt share its prefill
        cache.batch_repeat_interleave(n)
        logits, mask = logits.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        positions = positions.repeat_interleave(n, 0)
    next_pos = positions[:, -1:] + 1
    # The attention mask grows in place too: room for every step, the current width a view.
    mask = torch.cat([mask, mask.new_ones(mask.shape[0], steps)], dim=1)
    total = len(prompt_ids) * n
    tokens = torch.full((total, steps), pad, dtype=torch.long)
    lengths = torch.zeros(total, dtype=torch.long)
    rows = torch.arange(total)  # the output row of each batch row
    live = torch.ones(total, dtype=torch.bool)  # finished rows stay in the batch until enough of them leave
    for step in range(steps):
        new = logits.argmax(-1) if params.greedy else sample_tokens(logits, uniforms[rows, step],
                                                                    params.temperature, params.top_p)
        new_cpu = new.cpu()
        at = live.nonzero().squeeze(1)
        r, got = rows[at], new_cpu[at]
        tokens[r, step] = got
        lengths[r] = step + 1
        done = got == eos if eos is not None else torch.zeros(len(r), dtype=torch.bool)
        if stopper is not None:
            done |= stopper.hits(tokens, r, step, got)
        live[at[done]] = False
        alive = len(at) - int(done.sum())
        if step == steps - 1 or alive == 0:
            break
        dead = len(rows) - alive
        if dead and dead >= _COMPACT_AT * len(rows):  # drop the finished rows from the batch and the cache
            keep = live.nonzero().squeeze(1)
            rows, live, keep = rows[keep], live[keep], keep.to(device)
            cache.batch_select_indices(keep)
            mask, next_pos, new = mask[keep], next_pos[keep], new[keep]
        width += 1
        out = model(input_ids=new.view(-1, 1), attention_mask=mask[:, :width], position_ids=next_pos,
                    past_key_values=cache, use_cache=True)
        logits, next_pos = out.logits[:, -1].float(), next_pos + 1
    return tokens, lengths


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], params: SamplingParams, batch_size: int = 64,
             desc: str = "generate", progress: bool = True, first_index: int = 0) -> list[list[Completion]]:
    """`params.n` completions for each prompt, in prompt order. `first_index` is the index of `prompts[0]` in
    the whole list when `prompts` is one rank's shard; sampled completions depend on it."""
    was_training = model.training
    model.eval()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pad = pad if pad is not None else (eos if eos is not None else 0)
    encoded = tokenizer(prompts, add_special_tokens=False).input_ids if prompts else []
    # Longest first: batches of similar lengths carry little padding, and memory runs out on the first if at all.
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    stopper = None
    out: list[list[Completion] | None] = [None] * len(prompts)
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
            batch = order[start:start + batch_size]
            if params.max_new_tokens <= 0:
                for i in batch:
                    out[i] = [Completion("", "length", 0, ()) for _ in range(params.n)]
                continue
            uniforms = None
            if not params.greedy:
                uniforms = torch.cat([_row_uniforms(params, first_index + i, 1, params.max_new_tokens)
                                      for i in batch])
            if params.stop and stopper is None:
                stopper = _StopStrings(tokenizer, params.stop, len(tokenizer))
            tokens, lengths = _decode_batch(model, [encoded[i] for i in batch], params, uniforms, pad, eos, stopper)
            seqs = [row[:k] for row, k in zip(tokens.tolist(), lengths.tolist())]
            seqs = [ids[:-1] if ids and ids[-1] == eos else ids for ids in seqs]  # EOS ends a row, not its text
            texts = tokenizer.batch_decode(seqs, skip_special_tokens=True)
            for j, i in enumerate(batch):
                row = []
                for r in range(j * params.n, (j + 1) * params.n):
                    ended = lengths[r] > len(seqs[r])
                    text, stopped = cut_at_stop(texts[r], params.stop)
                    row.append(Completion(text, "stop" if ended or stopped else "length", len(seqs[r]),
                                          tuple(seqs[r])))
                out[i] = row
    finally:
        model.train(was_training)
    return out
