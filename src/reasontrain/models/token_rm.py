"""OREAL's token-level reward model: the policy's transformer with a fresh scalar head instead of `lm_head`,
as transformers' `AutoModelForTokenClassification(num_labels=1)` (no dropout on the head).

It scores every position; the logit at position t belongs to the token predicted there (t+1), exactly like the
policy's log-probs, so one response mask serves both. It saves and loads like any transformers model.
"""

from __future__ import annotations

import torch


def token_reward_model(path: str, dtype: str = "float32", trust_remote_code: bool = False, seed: int = 0):
    """The transformer of the causal LM saved at `path` (its `lm_head` is not loaded) plus a scalar head drawn
    from N(0, initializer_range) by `seed`, the same head whatever the process or library version."""
    import logging

    from transformers import AutoConfig, AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    config.num_labels, config.classifier_dropout = 1, 0.0
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)  # "score.weight newly initialized": it is, on purpose, just below
    try:
        model = AutoModelForTokenClassification.from_pretrained(path, config=config, dtype=getattr(torch, dtype),
                                                                trust_remote_code=trust_remote_code)
    finally:
        hf_logging.set_verbosity(verbosity)
    head = getattr(model, "score", None) or model.classifier  # the head's name in decoder / encoder models
    std = getattr(config, "initializer_range", 0.02)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_((torch.randn(head.weight.shape, generator=gen) * std).to(head.weight.dtype))
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()
    return model


def token_rm_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position scalar logits, shape (B, T), in float32."""
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[..., 0].float()
