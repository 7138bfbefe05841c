"""Preference pairs as token ids: the one tokenization that training, reference caching and token scoring share.

Token weights are stored per response token, aligned to exactly these ids, so a weight computed by one stage
lands on the same token the policy sees in training.
"""

from __future__ import annotations

from difflib import SequenceMatcher


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer, prompt: str, chosen: str, rejected: str, append_eos: bool = True) -> dict:
    """{"prompt_ids", "chosen_ids", "rejected_ids"}. Responses are tokenized in context (prompt + response), so
    a token that merges across the boundary stays whole; the prompt ends where both sequences diverge from it."""
    enc = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    prompt_ids = enc(prompt)
    full_c, full_r = enc(prompt + chosen), enc(prompt + rejected)
    n = min(_common_prefix(prompt_ids, full_c), _common_prefix(prompt_ids, full_r))
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    return {"prompt_ids": prompt_ids[:n], "chosen_ids": full_c[n:] + eos, "rejected_ids": full_r[n:] + eos}


def edit_token_weights(chosen_ids: list[int], rejected_ids: list[int], weight: float) -> tuple[list[float], list[float]]:
    """Weights that up-weight (by `weight`) the tokens where chosen and rejected differ; 1 elsewhere.

    RISE's edit pairs differ in a few tokens; this makes their DPO gradient concentrate there explicitly.
    """
    wc, wr = [1.0] * len(chosen_ids), [1.0] * len(rejected_ids)
    if weight == 1.0:
        return wc, wr
    for tag, i1, i2, j1, j2 in SequenceMatcher(a=chosen_ids, b=rejected_ids, autojunk=False).get_opcodes():
        if tag != "equal":
            for i in range(i1, i2):
                wc[i] = weight
            for j in range(j1, j2):
                wr[j] = weight
    return wc, wr
