"""Loading the policy and its tokenizer from the model config, and the vocabulary edits recipes need."""

from __future__ import annotations

from pathlib import Path

import torch


class ModelLoadError(RuntimeError):
    pass


def looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).exists() or path.count("/") > 1


def load_pretrained(path: str, dtype: str = "float32", trust_remote_code: bool = False):
    """(model, tokenizer) from a local folder or a Hub id, with a one-line error when it cannot be found."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if looks_local(path) and not Path(path).expanduser().exists():
        raise ModelLoadError(f"model path does not exist: {path}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                     trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ModelLoadError(f"cannot load model {path!r}: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enable_kv_cache(model)
    return model, tokenizer


def enable_kv_cache(model) -> None:
    """Turn the KV cache on in `model.config` and its generation config. Training turns it off (gradient
    checkpointing needs it off) and checkpoints saved then keep it off, which makes every later generation from
    them recompute the whole sequence at each token."""
    for cfg in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        if cfg is not None:
            cfg.use_cache = True


_UNSET = object()


def save_for_inference(model, tokenizer, folder, **save_kwargs) -> None:
    """`model.save_pretrained(folder)` (and the tokenizer, if given) with the KV cache on in both config.json and
    generation_config.json, whatever training set; the model's own configs are left as they were."""
    configs = [c for c in (getattr(model, "config", None), getattr(model, "generation_config", None)) if c is not None]
    before = [c.__dict__.get("use_cache", _UNSET) for c in configs]
    enable_kv_cache(model)
    try:
        model.save_pretrained(folder, **save_kwargs)
    finally:
        for c, value in zip(configs, before):
            if value is _UNSET:
                del c.use_cache
            else:
                c.use_cache = value
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def build_starting_model(model_cfg, seed: int):
    """The starting policy: the embedded tiny model (built from its config) or a pretrained one."""
    if model_cfg.path is None:
        if model_cfg.name != "tiny":
            raise ModelLoadError(f"model={model_cfg.name} sets no model.path; only model=tiny is built locally")
        from reasontrain.models.tiny import build_model, build_tokenizer

        t = model_cfg.tiny
        tokenizer = build_tokenizer()
        model = build_model(tokenizer, t.hidden_size, t.num_layers, t.num_heads, t.intermediate_size,
                            t.max_position_embeddings, seed)
        return model, tokenizer
    return load_pretrained(model_cfg.path, model_cfg.dtype, model_cfg.trust_remote_code)


def add_mean_initialized_token(model, tokenizer, token: str) -> int:
    """Add `token` to the vocabulary with input and output embeddings set to the mean of the existing rows.

    Returns its id. A token already present is left as it is.
    """
    if token in tokenizer.get_vocab():
        return tokenizer.convert_tokens_to_ids(token)
    old = model.get_input_embeddings().weight.shape[0]
    tokenizer.add_tokens([token], special_tokens=True)
    new_id = tokenizer.convert_tokens_to_ids(token)
    model.resize_token_embeddings(max(old, len(tokenizer)), mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[new_id] = emb[:old].mean(dim=0)
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.data_ptr():
            out.weight[new_id] = out.weight[:old].mean(dim=0)
    return new_id
