"""The embedded model behaves like any Hub model: char-level round trips, a chat template, save/load."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_char_level_round_trip(tokenizer):
    text = "Ann has 7 eggs.\nStep 1: 7 + 5 = 12\n#### 12"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_chat_template_renders_question_and_generation_prompt(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "2 + 2?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "Q: 2 + 2?\nA: "


def test_save_and_load_like_a_hub_model(tmp_path, tokenizer, tiny_model):
    tokenizer.save_pretrained(tmp_path)
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    text = "Bob has 3 pens. How many now?"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    x = torch.tensor([tok(text).input_ids])
    assert torch.allclose(model(x).logits, tiny_model(x).logits, atol=1e-5)


def test_build_is_seeded(tokenizer):
    from reasontrain.models.tiny import build_model

    a = build_model(tokenizer, 32, 1, 2, 64, 128, seed=3)
    b = build_model(tokenizer, 32, 1, 2, 64, 128, seed=3)
    c = build_model(tokenizer, 32, 1, 2, 64, 128, seed=4)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
