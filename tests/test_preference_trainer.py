"""The preference trainer on the real TRL DPOTrainer: equal to TRL's sigmoid DPO with unit weights, token
weights landing on the exact response positions, and LoRA / frozen-copy references."""

import copy
import math

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from reasontrain.data.pairs import edit_token_weights, tokenize_pair
from reasontrain.trainers.preference import PreferenceTrainer, SharedPrefixCollator, TokenFieldCollator

PAIRS = [
    ("Q: 2 + 3?\nA: ", "Step 1: 2 + 3 = 5\n#### 5", "Step 1: 2 + 3 = 6\n#### 6"),
    ("Q: 4 x 2?\nA: ", "Step 1: 4 x 2 = 8\n#### 8", "Step 1: 4 x 2 = 6\n#### 6"),
    ("Q: 9 - 1?\nA: ", "Step 1: 9 - 1 = 8\n#### 8", "Step 1: 9 - 1 = 10\n#### 10"),
    ("Q: 7 + 7?\nA: ", "Step 1: 7 + 7 = 14\n#### 14", "Step 1: 7 + 7 = 41\n#### 41"),
]


def args(tmp_path, **kw):
    return DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to=[],
                     use_cpu=True, bf16=False, beta=0.4, save_strategy="no", learning_rate=1e-3, **kw)


@pytest.fixture
def model_and_tok(tokenizer, tiny_model):
    model = copy.deepcopy(tiny_model)
    # Perturb the policy so it differs from the reference and the loss is not log 2.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, tokenizer


def tokenized(tok, weights=None):
    rows = [tokenize_pair(tok, p, c, r) for p, c, r in PAIRS]
    if weights is not None:
        for row in rows:
            row["chosen_weights"], row["rejected_weights"] = weights(row)
    return Dataset.from_list(rows)


def test_unit_weights_equal_trl_sigmoid_dpo(tmp_path, model_and_tok, tiny_model):
    model, tok = model_and_tok
    trl = DPOTrainer(model=copy.deepcopy(model), ref_model=copy.deepcopy(tiny_model), args=args(tmp_path / "a"),
                     train_dataset=Dataset.from_list([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS]),
                     processing_class=tok)
    ours = PreferenceTrainer(model=copy.deepcopy(model), ref_model=copy.deepcopy(tiny_model),
                             args=args(tmp_path / "b"), train_dataset=tokenized(tok), processing_class=tok)
    # Same token ids as TRL's own tokenization.
    assert trl.train_dataset["chosen_ids"] == ours.train_dataset["chosen_ids"]
    assert trl.train_dataset["prompt_ids"] == ours.train_dataset["prompt_ids"]
    examples = [ours.train_dataset[i] for i in range(4)]
    batch = ours.data_collator(examples)
    assert isinstance(ours.data_collator, SharedPrefixCollator) and "logp_index" in batch
    plain = TokenFieldCollator(pad_token_id=tok.pad_token_id)(examples)
    trl_batch = trl.data_collator([trl.train_dataset[i] for i in range(4)])
    assert torch.equal(plain["input_ids"], trl_batch["input_ids"])
    assert torch.equal(batch["completion_mask"], trl_batch["completion_mask"])
    with torch.no_grad():
        expected = trl._compute_loss(trl.model, dict(trl_batch), False)
        for b in (batch, plain):  # the trainer's shared-prefix layout and the plain one
            got = ours._compute_loss(ours.model, dict(b), False)
            assert abs(got.item() - expected.item()) < 1e-6
    assert abs(got.item() - math.log(2)) > 1e-3


def test_token_weight_lands_on_the_exact_response_position(tmp_path, model_and_tok, tiny_model):
    model, tok = model_and_tok
    k = 3  # the 4th response token of every rejected response carries all the weight

    def only_k(row):
        w = [0.0] * len(row["rejected_ids"])
        w[k] = 1.0
        return [0.0] * len(row["chosen_ids"]), w

    trainer = PreferenceTrainer(model=model, ref_model=copy.deepcopy(tiny_model), args=args(tmp_path),
                                train_dataset=tokenized(tok, only_k), processing_class=tok)
    examples = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(examples)
    plain = TokenFieldCollator(pad_token_id=tok.pad_token_id)(examples)  # input ids on the (2B, T) grid
    assert torch.equal(batch["token_weights"], plain["token_weights"])
    with torch.no_grad():
        loss = trainer._compute_loss(trainer.model, dict(batch), False)
        pol = trainer.per_token_logps(trainer.model, batch)
        ref = trainer.per_token_logps(trainer.ref_model, batch)
    # Position of rejected token k in the shifted (2B, T-1) grid: prompt length + k - 1.
    expected = []
    for i in range(4):
        t = len(trainer.train_dataset[i]["prompt_ids"]) + k - 1
        row = 4 + i
        delta = pol[row, t] - ref[row, t]
        assert plain["input_ids"][row, t + 1] == trainer.train_dataset[i]["rejected_ids"][k]
        assert batch["token_weights"][row, t + 1] == 1.0
        expected.append(-torch.nn.functional.logsigmoid(-0.4 * delta))
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), abs=1e-6)


def test_collator_checks_weight_lengths(tokenizer):
    row = tokenize_pair(tokenizer, "Q: 1?\nA: ", "1", "2")
    row["chosen_weights"], row["rejected_weights"] = [1.0, 1.0], [1.0, 1.0, 1.0]  # "1"+EOS, "2"+EOS
    with pytest.raises(ValueError, match="rejected_weights has 3 values for 2 rejected tokens"):
        TokenFieldCollator(pad_token_id=0)([row])
    with pytest.raises(ValueError, match="rejected_weights has 3 values for 2 rejected tokens"):
        SharedPrefixCollator(pad_token_id=0)([row])


def test_edit_token_weights_mark_the_differing_tokens():
    wc, wr = edit_token_weights([1, 2, 3, 4], [1, 2, 9, 4], 3.0)
    assert wc == [1.0, 1.0, 3.0, 1.0] and wr == [1.0, 1.0, 3.0, 1.0]
    wc, wr = edit_token_weights([1, 2, 3], [1, 3], 2.0)  # a deleted term
    assert wc == [1.0, 2.0, 1.0] and wr == [1.0, 1.0]


def test_lora_reference_is_the_adapter_disabled(tmp_path, tokenizer, tiny_model):
    from peft import LoraConfig

    trainer = PreferenceTrainer(model=copy.deepcopy(tiny_model), args=args(tmp_path), train_dataset=tokenized(tokenizer),
                                processing_class=tokenizer,
                                peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                       task_type="CAUSAL_LM"))
    assert trainer.ref_model is None
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        # LoRA B starts at zero: policy == reference, so the loss is exactly log 2.
        assert trainer._compute_loss(trainer.model, dict(batch), False).item() == pytest.approx(math.log(2), abs=1e-6)
    trainer.train()
    with torch.no_grad():
        assert trainer._compute_loss(trainer.model, dict(batch), False).item() < math.log(2)


def cached_reference_trainer(model, tok, cache):
    """A function of an output folder that builds a trainer whose reference log-probs are cached in `cache`."""
    return lambda path: PreferenceTrainer(model=copy.deepcopy(model), args=args(path, precompute_ref_log_probs=True),
                                          train_dataset=tokenized(tok), processing_class=tok, ref_cache_dir=str(cache))


def test_reference_cache_second_run_does_no_reference_forward(tmp_path, model_and_tok):
    model, tok = model_and_tok
    cache = tmp_path / "ref_cache"
    build = cached_reference_trainer(model, tok, cache)

    first = build(tmp_path / "a")
    assert first.ref_cache_hit is False and first.ref_model is None
    assert len(list(cache.glob("*.parquet"))) == 1
    batch = first.data_collator([first.train_dataset[i] for i in range(4)])
    # The cached values are the initial policy's own per-token log-probs at the response positions.
    with torch.no_grad():
        live = first.per_token_logps(first.model, batch)
    mask = batch["completion_mask"][:, 1:].bool()
    assert torch.allclose(batch["ref_token_logps"][:, 1:][mask], live[mask], atol=1e-5)
    assert first._compute_loss(first.model, dict(batch), False).item() == pytest.approx(math.log(2), abs=1e-5)

    calls = []
    original = PreferenceTrainer.per_token_logps
    PreferenceTrainer.per_token_logps = lambda self, m, i: calls.append(1) or original(self, m, i)
    try:
        second = build(tmp_path / "b")
    finally:
        PreferenceTrainer.per_token_logps = original
    assert second.ref_cache_hit is True and calls == []
    assert second.train_dataset["ref_rejected_token_logps"] == first.train_dataset["ref_rejected_token_logps"]


@pytest.mark.parametrize("damage", ["cut short", "other rows"])
def test_a_corrupt_reference_cache_is_recomputed_with_a_warning(tmp_path, model_and_tok, caplog, damage):
    import pyarrow as pa
    import pyarrow.parquet as pq

    model, tok = model_and_tok
    cache = tmp_path / "ref_cache"
    build = cached_reference_trainer(model, tok, cache)

    first = build(tmp_path / "a")
    (file,) = cache.glob("*.parquet")
    if damage == "cut short":
        file.write_bytes(file.read_bytes()[:40])
    else:
        pq.write_table(pa.table({"ref_chosen_token_logps": [[0.0]], "ref_rejected_token_logps": [[0.0]]}), file)
    with caplog.at_level("WARNING", logger="reasontrain"):
        second = build(tmp_path / "b")
    assert second.ref_cache_hit is False and "is unreadable" in caplog.text and str(file) in caplog.text
    assert second.train_dataset["ref_rejected_token_logps"] == first.train_dataset["ref_rejected_token_logps"]
    assert build(tmp_path / "c").ref_cache_hit is True  # rewritten whole
