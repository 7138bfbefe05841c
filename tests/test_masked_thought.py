"""Masked Thought noise: only response positions change, at the scheduled rate, and labels never change."""

import pytest
import torch

from reasontrain.trainers.noise import mask_rate, mask_response_tokens


def test_rate_ramps_linearly_over_66_percent_then_stays():
    total = 100
    assert mask_rate(0, total, 0.4) == 0.0
    assert mask_rate(10, total, 0.4) == pytest.approx(0.4 * 10 / 67)
    assert mask_rate(33, total, 0.4) == pytest.approx(0.4 * 33 / 67)
    assert mask_rate(67, total, 0.4) == pytest.approx(0.4)
    assert mask_rate(100, total, 0.4) == pytest.approx(0.4)
    assert mask_rate(50, total, 0.0) == 0.0
    rates = [mask_rate(s, total, 0.2) for s in range(total)]
    assert rates == sorted(rates) and max(rates) == pytest.approx(0.2)


def _batch(prompt_len=30, resp_len=200, batch=8):
    ids = torch.randint(10, 90, (batch, prompt_len + resp_len))
    labels = ids.clone()
    labels[:, :prompt_len] = -100
    labels[-1, -50:] = -100  # padding at the end of the last row
    return ids, labels


@pytest.mark.parametrize("noise", ["mask_token", "random_token"])
def test_only_response_positions_change(noise):
    ids, labels = _batch()
    before_labels = labels.clone()
    out = mask_response_tokens(ids, labels, 0.5, noise=noise, mask_id=99,
                               replacement_ids=torch.arange(5, 9), generator=torch.Generator().manual_seed(0))
    changed = out != ids
    assert not changed[labels == -100].any(), "prompt or padding positions were masked"
    assert changed.any()
    assert torch.equal(labels, before_labels)
    if noise == "mask_token":
        assert (out[changed] == 99).all()
    else:
        assert ((out[changed] >= 5) & (out[changed] < 9)).all()


def test_masked_fraction_matches_rate():
    ids, labels = _batch(resp_len=2000, batch=4)
    for rate in (0.1, 0.4):
        out = mask_response_tokens(ids, labels, rate, noise="mask_token", mask_id=99,
                                   generator=torch.Generator().manual_seed(1))
        frac = ((out == 99) & (labels != -100)).sum() / (labels != -100).sum()
        assert abs(frac.item() - rate) < 0.02


def test_rate_zero_is_identity():
    ids, labels = _batch()
    assert torch.equal(mask_response_tokens(ids, labels, 0.0, noise="mask_token", mask_id=99), ids)


def test_trainer_masks_inputs_not_labels(tmp_path, tokenizer, tiny_model, monkeypatch):
    """Inside the real TRL-based trainer: the model sees corrupted response tokens, the loss the originals."""
    import copy

    from datasets import Dataset
    from trl import SFTConfig

    from reasontrain.config import MaskedThoughtConfig
    from reasontrain.models.loading import add_mean_initialized_token
    from reasontrain.trainers import sft
    from reasontrain.trainers.sft import ReasonSFTTrainer

    tok = copy.deepcopy(tokenizer)
    model = copy.deepcopy(tiny_model)
    old_rows = model.get_input_embeddings().weight.detach().clone()
    mask_id = add_mean_initialized_token(model, tok, "<mask>")
    emb = model.get_input_embeddings().weight
    assert torch.allclose(emb[mask_id], old_rows.mean(0), atol=1e-6)

    ds = Dataset.from_list([{"prompt": "Q: 1+1?\nA: ", "completion": "Step 1: 1 + 1 = 2\n#### 2"}] * 16)
    args = SFTConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, report_to=[],
                     use_cpu=True, bf16=False, logging_steps=1, save_strategy="no", learning_rate=1e-3)
    mt = MaskedThoughtConfig(max_rate=0.9, ramp_fraction=0.01, noise="mask_token")
    trainer = ReasonSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, masked_thought=mt,
                               mask_token_id=mask_id)
    # What the model is fed, the labels the loss is taken against, and what the collator produced before the noise.
    fed, scored, collated = [], [], []
    model.register_forward_pre_hook(lambda mod, a, kw: fed.append(kw["input_ids"].clone()), with_kwargs=True)
    nll_sum = sft.completion_nll_sum
    monkeypatch.setattr(sft, "completion_nll_sum", lambda logits, labels: scored.append(labels.clone())
                        or nll_sum(logits, labels))
    original_compute_loss = trainer.compute_loss

    def spy(model, inputs, **kw):
        collated.append(inputs["input_ids"].clone())
        return original_compute_loss(model, inputs, **kw)

    trainer.compute_loss = spy
    trainer.train()
    assert len(fed) == len(scored) == len(collated) == 3
    for noisy, labels, original in zip(fed[1:], scored[1:], collated[1:]):
        response = labels != -100
        assert torch.equal(labels[response], original[response]), "labels must keep the original tokens"
        assert (noisy[~response] == original[~response]).all(), "prompt tokens must not be masked"
        assert (noisy[response] == mask_id).float().mean() > 0.5
    # Step 0 of the ramp has rate 0: no noise.
    assert torch.equal(fed[0], collated[0])


def test_noise_draws_are_pinned():
    """The same generator draws the same positions and tokens (a rewrite of the sampler must not change them)."""
    ids, labels = _batch(prompt_len=4, resp_len=60, batch=2)  # row 2: 10 response tokens, then padding
    out = mask_response_tokens(ids, labels, 0.3, noise="random_token", mask_id=None,
                               replacement_ids=torch.arange(100, 110), generator=torch.Generator().manual_seed(7))
    changed = out != ids
    again = mask_response_tokens(ids, labels, 0.3, noise="random_token", mask_id=None,
                                 replacement_ids=torch.arange(100, 110), generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, again)
    assert changed.nonzero().tolist() == [[0, 4], [0, 6], [0, 7], [0, 10], [0, 14], [0, 15], [0, 17], [0, 20],
                                          [0, 24], [0, 31], [0, 35], [0, 38], [0, 39], [0, 41], [0, 45], [0, 47],
                                          [1, 7], [1, 9]]
    assert out[changed].tolist() == [103, 101, 104, 100, 108, 102, 109, 106, 108, 106, 105, 100, 109, 101, 108,
                                     102, 107, 101]
