"""The shared-prefix layout (one row per pair, the common prefix computed once) against the plain (2B, T) layout
that the trainer used before: same log-probs, loss and parameter gradients, with token weights, in both loss modes,
with NLL, under truncation, with SDPA and eager attention."""

import copy

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig

from reasontrain.data.pairs import edit_token_weights, tokenize_pair
from reasontrain.models.tiny import build_model
from reasontrain.trainers.preference import PreferenceTrainer, SharedPrefixCollator, TokenFieldCollator

PAIRS = [
    ("Q: 2 + 3?\nA: ", "Step 1: 2 + 3 = 5\n#### 5", "Step 1: 2 + 3 = 6\n#### 6"),  # an edit: long shared start
    ("Q: Ann has 12 pens and gets 3 more. How many?\nA: ", "12 + 3 = 15\n#### 15", "She has 9.\n#### 9"),
    ("Q: 9 - 1?\nA: ", "#### 8", "#### 8 or 9"),  # chosen text is a prefix of rejected
    ("Q: 7?\nA: ", "#### 7", "#### 7"),  # identical responses
]
# (max_length, truncation_mode): none; responses cut (and one prompt longer than max_length); keep_end cutting
# one row of a pair and not the other (that pair shares nothing); keep_end so short that no pair shares anything
# (the collator falls back to the plain layout).
TRUNCATIONS = [(None, "keep_start"), (20, "keep_start"), (68, "keep_end"), (12, "keep_end")]


@pytest.fixture(scope="module")
def models(tokenizer):
    reference = build_model(tokenizer, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                            max_position_embeddings=256, seed=1)
    policy = copy.deepcopy(reference)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a policy away from the reference, so the loss is not log 2
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return policy, reference


def examples(tokenizer, with_ref_columns=False):
    gen = torch.Generator().manual_seed(0)
    rows = []
    for prompt, chosen, rejected in PAIRS:
        row = tokenize_pair(tokenizer, prompt, chosen, rejected)
        wc, wr = edit_token_weights(row["chosen_ids"], row["rejected_ids"], 3.0)
        row["chosen_weights"] = [w * (0.5 + float(torch.rand(1, generator=gen))) for w in wc]
        row["rejected_weights"] = [w * (0.5 + float(torch.rand(1, generator=gen))) for w in wr]
        if with_ref_columns:
            row["ref_chosen_token_logps"] = (-torch.rand(len(wc), generator=gen)).tolist()
            row["ref_rejected_token_logps"] = (-torch.rand(len(wr), generator=gen)).tolist()
        rows.append(row)
    return rows


def trainer(tmp_path, tokenizer, models, mode="sequence", nll_weight=0.0, max_length=None, truncation="keep_start"):
    policy, reference = models
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to=[],
                     use_cpu=True, bf16=False, beta=0.3, save_strategy="no", max_length=max_length,
                     truncation_mode=truncation)
    return PreferenceTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(reference), args=args,
                             train_dataset=Dataset.from_list(examples(tokenizer)), processing_class=tokenizer,
                             loss_mode=mode, nll_weight=nll_weight)


def collate(collator_cls, tokenizer, rows, max_length, truncation):
    return collator_cls(pad_token_id=tokenizer.pad_token_id, max_length=max_length, truncation_mode=truncation)(rows)


def loss_and_grads(tr, batch):
    tr.model.zero_grad()
    loss = tr._compute_loss(tr.model, dict(batch), False)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("max_length,truncation", TRUNCATIONS)
def test_grids_and_scored_tokens_match_the_plain_layout(tokenizer, max_length, truncation):
    rows = examples(tokenizer, with_ref_columns=True)
    plain = collate(TokenFieldCollator, tokenizer, rows, max_length, truncation)
    shared = collate(SharedPrefixCollator, tokenizer, rows, max_length, truncation)
    for key in ("completion_mask", "token_weights", "ref_token_logps"):
        assert torch.equal(plain[key], shared[key]), key
    if max_length == 12:
        assert "logp_index" not in shared  # every pair cut differently: the plain layout is cheaper
        return
    assert shared["input_ids"].shape[0] == len(rows) and shared["input_ids"].numel() < plain["input_ids"].numel()
    # Every scored cell of the shifted grid points at a position whose label is the grid's next token.
    mask = plain["completion_mask"][:, 1:].bool()
    picked = shared["shift_labels"].reshape(-1)[shared["logp_index"]]
    assert torch.equal(picked[mask], plain["input_ids"][:, 1:][mask])
    # ... and at no other labelled position: each label is used (shared ones by both rows of the pair).
    assert set(shared["logp_index"][mask].tolist()) == set((shared["shift_labels"].reshape(-1) != -100)
                                                           .nonzero().flatten().tolist())


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_log_probs_equal_one_unpadded_forward_per_sequence(tokenizer, models, attention):
    policy = copy.deepcopy(models[0])
    policy.set_attn_implementation(attention)
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(policy)
    rows = examples(tokenizer)
    shared = collate(SharedPrefixCollator, tokenizer, rows, None, "keep_start")
    tr = PreferenceTrainer.__new__(PreferenceTrainer)
    tr.attn_implementation = attention
    with torch.no_grad():
        got = tr.per_token_logps(policy, shared)
        n = len(rows)
        for r in range(2 * n):
            row = rows[r % n]
            response = row["chosen_ids" if r < n else "rejected_ids"]
            ids = torch.tensor([row["prompt_ids"] + response])
            logps = policy(input_ids=ids, fused_lm_head=False).logits.log_softmax(-1)[0, :-1]
            expected = logps.gather(-1, ids[0, 1:, None])[:, 0][len(row["prompt_ids"]) - 1:]
            start = len(row["prompt_ids"]) - 1
            assert torch.allclose(got[r, start:start + len(response)], expected, atol=1e-5)
            assert got[r, start + len(response):].abs().sum() == 0 and got[r, :start].abs().sum() == 0


@pytest.mark.parametrize("max_length,truncation", TRUNCATIONS[:3])
@pytest.mark.parametrize("mode,nll_weight", [("sequence", 0.0), ("sequence", 0.5), ("per_position", 0.5)])
def test_loss_and_gradients_equal_the_plain_layout(tmp_path, tokenizer, models, mode, nll_weight, max_length,
                                                   truncation):
    tr = trainer(tmp_path, tokenizer, models, mode, nll_weight, max_length, truncation)
    assert isinstance(tr.data_collator, SharedPrefixCollator)
    rows = [tr.train_dataset[i] for i in range(len(PAIRS))]
    plain_loss, plain_grads = loss_and_grads(tr, collate(TokenFieldCollator, tokenizer, rows, max_length, truncation))
    loss, grads = loss_and_grads(tr, tr.data_collator(rows))
    assert torch.allclose(loss, plain_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == plain_grads.keys() and len(grads) > 0
    for name, g in grads.items():
        assert torch.allclose(g, plain_grads[name], rtol=1e-4, atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_eager_attention_trains_on_the_shared_layout(tmp_path, tokenizer, models):
    policy, reference = (copy.deepcopy(m) for m in models)
    for m in (policy, reference):
        m.set_attn_implementation("eager")
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to=[],
                     use_cpu=True, bf16=False, beta=0.3, save_strategy="no")
    tr = PreferenceTrainer(model=policy, ref_model=reference, args=args, processing_class=tokenizer,
                           train_dataset=Dataset.from_list(examples(tokenizer)), loss_mode="per_position",
                           nll_weight=0.5)
    rows = [tr.train_dataset[i] for i in range(len(PAIRS))]
    plain_loss, plain_grads = loss_and_grads(tr, collate(TokenFieldCollator, tokenizer, rows, None, "keep_start"))
    loss, grads = loss_and_grads(tr, tr.data_collator(rows))
    assert torch.allclose(loss, plain_loss, rtol=1e-6, atol=1e-6)
    for name, g in grads.items():
        assert torch.allclose(g, plain_grads[name], rtol=1e-4, atol=1e-6), name


def test_sliding_window_models_keep_the_plain_layout(tmp_path, tokenizer, models):
    # A custom 4D mask would replace the sliding-window mask, so such models are not given the shared layout.
    policy = copy.deepcopy(models[0])
    policy.config.use_sliding_window, policy.config.sliding_window = True, 16
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to=[],
                     use_cpu=True, bf16=False, save_strategy="no")
    tr = PreferenceTrainer(model=policy, ref_model=copy.deepcopy(models[1]), args=args, processing_class=tokenizer,
                           train_dataset=Dataset.from_list(examples(tokenizer)))
    assert type(tr.data_collator) is TokenFieldCollator
