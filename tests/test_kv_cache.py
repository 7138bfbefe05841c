"""The KV cache: every saved checkpoint has it on in both config files, and the HF backend always decodes with it
(one new token per forward pass after the prefill), whatever the loaded checkpoint's config says."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from reasontrain.generation.base import SamplingParams
from reasontrain.generation.hf import generate, sample_tokens
from reasontrain.models.loading import load_pretrained, save_for_inference


def cache_flags(folder: Path) -> dict:
    return {name: json.loads((folder / name).read_text()).get("use_cache")
            for name in ("config.json", "generation_config.json")}


def cache_off(model):
    model.config.use_cache = False
    model.generation_config.use_cache = False
    return model


def test_save_for_inference_turns_the_cache_on_and_leaves_the_model_as_it_was(tokenizer, tiny_model, tmp_path):
    model = cache_off(tiny_model)
    try:
        model.save_pretrained(tmp_path / "plain")
        assert cache_flags(tmp_path / "plain") == {"config.json": False, "generation_config.json": False}
        save_for_inference(model, tokenizer, tmp_path / "final")
        assert cache_flags(tmp_path / "final") == {"config.json": True, "generation_config.json": True}
        assert (tmp_path / "final" / "tokenizer.json").exists()
        assert model.config.use_cache is False and model.generation_config.use_cache is False  # training's choice
    finally:
        model.config.use_cache = model.generation_config.use_cache = True


def test_zero3_gathered_final_has_the_cache_on(tokenizer, tmp_path):
    """save_final_model's ZeRO-3 branch: rank 0 rebuilds the model from its (cache-off) config and the gathered
    weights. A stand-in trainer hands it the state dict the collective gather would return."""
    from reasontrain.models.tiny import build_model
    from reasontrain.stages.base import save_final_model

    model = cache_off(build_model(tokenizer, 32, 1, 2, 64, 256, seed=0))
    accelerator = SimpleNamespace(unwrap_model=lambda m: m, deepspeed_config={"zero_optimization": {"stage": 3}},
                                  get_state_dict=lambda m: {k: v.clone() for k, v in m.state_dict().items()})
    trainer = SimpleNamespace(accelerator=accelerator, model=model, model_wrapped=model, is_deepspeed_enabled=True)
    save_final_model(trainer, tokenizer, tmp_path / "final", merge_lora=False)
    assert cache_flags(tmp_path / "final") == {"config.json": True, "generation_config.json": True}
    loaded, _ = load_pretrained(str(tmp_path / "final"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_lora_merged_final_has_the_cache_on(tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    from reasontrain.models.tiny import build_model
    from reasontrain.stages.base import save_final_model

    model = get_peft_model(cache_off(build_model(tokenizer, 32, 1, 2, 64, 256, seed=0)),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    accelerator = SimpleNamespace(unwrap_model=lambda m: m)
    trainer = SimpleNamespace(accelerator=accelerator, model=model, is_deepspeed_enabled=False)
    save_final_model(trainer, tokenizer, tmp_path / "final", merge_lora=True)
    assert not (tmp_path / "final" / "adapter_config.json").exists()
    assert cache_flags(tmp_path / "final") == {"config.json": True, "generation_config.json": True}


def test_load_pretrained_turns_the_cache_on(tokenizer, tiny_model, tmp_path):
    cache_off(tiny_model)
    try:
        tiny_model.save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
    finally:
        tiny_model.config.use_cache = tiny_model.generation_config.use_cache = True
    model, _ = load_pretrained(str(tmp_path))
    assert model.config.use_cache is True and model.generation_config.use_cache is True


def record_forward_calls(model) -> tuple[list, object]:
    calls = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls.append((ids.shape[1], kwargs.get("past_key_values") is not None, kwargs.get("use_cache")))

    return calls, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_the_hf_backend_decodes_with_the_cache_even_when_the_config_says_off(tokenizer, tiny_model):
    cache_off(tiny_model)
    calls, handle = record_forward_calls(tiny_model)
    try:
        for params in (SamplingParams(max_new_tokens=6), SamplingParams(n=3, temperature=1.0, max_new_tokens=6)):
            calls.clear()
            generate(tiny_model, tokenizer, ["Q: 1+1\nA: ", "Q: 12 x 3\nA: "], params, progress=False)
            assert len(calls) >= 2
            prefill, *steps = calls
            assert prefill[0] > 1 and prefill[2] is True
            assert all(width == 1 and has_cache and use for width, has_cache, use in steps), calls
    finally:
        handle.remove()
        tiny_model.config.use_cache = tiny_model.generation_config.use_cache = True


def reference_completion(model, tokenizer, prompt: str, uniforms: torch.Tensor | None, params: SamplingParams):
    """One row decoded the slow, obvious way: the whole sequence through the model at every step, no cache, no
    padding, no batch."""
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    out = []
    for step in range(params.max_new_tokens):
        logits = model(input_ids=ids, use_cache=False).logits[:, -1].float()
        token = logits.argmax(-1) if uniforms is None else sample_tokens(logits, uniforms[step:step + 1],
                                                                          params.temperature, params.top_p)
        if token.item() == tokenizer.eos_token_id:
            break
        out.append(token.item())
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
        text = tokenizer.decode(out)
        if any(s in text for s in params.stop):
            break
    return out


def test_cached_batched_decoding_matches_full_recomputation(tokenizer, tiny_model):
    """Sorting, left padding, the shared prefill of n samples, the cache and dropping finished rows change
    nothing: every row equals its own decoding without any of them."""
    from reasontrain.generation.hf import _row_uniforms

    prompts = ["Q: 1+1\nA: ", "Q: a much longer question, with more words\nA: ", "Q: x\nA: ", "Q: 23 x 4 = ?\nA: "]
    torch.manual_seed(0)
    model, lengths = tiny_model, set()
    with torch.no_grad():
        for params in (SamplingParams(max_new_tokens=24), SamplingParams(max_new_tokens=24, stop=("1", "a")),
                       SamplingParams(n=4, temperature=1.3, max_new_tokens=24, seed=3),
                       SamplingParams(n=3, temperature=0.8, top_p=0.9, max_new_tokens=24, seed=4, stop=("e",))):
            got = generate(model, tokenizer, prompts, params, batch_size=3, progress=False)
            for i, prompt in enumerate(prompts):
                uniforms = None if params.greedy else _row_uniforms(params, i, 1, params.max_new_tokens)
                for j in range(params.n):
                    want = reference_completion(model, tokenizer, prompt, None if uniforms is None else uniforms[j],
                                                params)
                    assert list(got[i][j].token_ids) == want, (params, i, j)
            lengths |= {c.num_tokens for row in got for c in row}
    assert len(lengths) > 2  # rows finished at different steps, so some left the batch early
