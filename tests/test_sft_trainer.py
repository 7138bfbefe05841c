"""The SFT trainer's loss: equal to TRL's, and unchanged per token when examples are packed (train.packing)."""

import copy

import pytest
import torch
from omegaconf import OmegaConf

ROWS = [{"prompt": f"Q: {a} + {b}?\nA: ", "completion": f"Step 1: {a} + {b} = {a + b}\n#### {a + b}"}
        for a, b in [(1, 2), (13, 4), (7, 70), (5, 5), (21, 3), (9, 11), (40, 2), (6, 8)]]


def _cfg(packing: bool, max_rate: float = 0.0, batch: int = 4):
    from reasontrain.config import RootConfig

    cfg = OmegaConf.structured(RootConfig(recipe="sft"))
    cfg.train.packing = packing
    cfg.train.global_batch_size = cfg.train.micro_batch_size = batch
    cfg.train.max_length = 96
    cfg.train.max_steps = 3
    cfg.train.lr = 1e-3
    cfg.train.logging_steps = 1
    cfg.tracking.backend = "none"
    cfg.masked_thought.max_rate = max_rate
    cfg.masked_thought.ramp_fraction = 0.01
    return cfg


def _trainer(tmp_path, tokenizer, model, packing: bool, max_rate: float = 0.0, batch: int = 4, mask_id=None):
    from datasets import Dataset

    from reasontrain.stages.train_sft import build_sft_trainer

    cfg = _cfg(packing, max_rate, batch)
    return build_sft_trainer(cfg, model, tokenizer, Dataset.from_list(ROWS), tmp_path, mask_token_id=mask_id)


def _token_nll(model, batch) -> torch.Tensor:
    """-log p of every scored label, in order, from the model's logits."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
    labels = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[..., 1:]
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=-100,
                                            reduction="none")
    return nll[labels.flatten() != -100]


@pytest.mark.parametrize("fused", [False, True])
def test_loss_and_gradients_equal_trl(tmp_path, tokenizer, tiny_model, monkeypatch, fused):
    """Both heads (the model's logits off Triton, TRL's chunked head on it) give TRL's loss and gradients."""
    from trl import SFTTrainer

    from reasontrain.trainers import sft

    monkeypatch.setattr(sft, "fused_head_pays", lambda device: fused)
    trainer = _trainer(tmp_path, tokenizer, copy.deepcopy(tiny_model), packing=False)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.train()
    for num_items in (None, torch.tensor(57)):
        results = []
        for compute in (trainer.compute_loss, lambda *a, **k: SFTTrainer.compute_loss(trainer, *a, **k)):
            loss = compute(model, dict(batch), num_items_in_batch=num_items)
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
            model.zero_grad()
        (ours, our_grads), (trl, trl_grads) = results
        torch.testing.assert_close(ours, trl, rtol=1e-5, atol=1e-6)
        for a, b in zip(our_grads, trl_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_packing_is_plumbed_to_trl(tmp_path, tokenizer, tiny_model):
    off = _trainer(tmp_path, tokenizer, copy.deepcopy(tiny_model), packing=False)
    on = _trainer(tmp_path, tokenizer, copy.deepcopy(tiny_model), packing=True)
    assert not off.args.packing and on.args.packing and on.padding_free
    assert "attention_mask" in next(iter(off.get_train_dataloader()))
    packed = next(iter(on.get_train_dataloader()))
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
    assert int((packed["position_ids"] == 0).sum()) > 1, "a packed row should hold several examples"


def test_packed_loss_per_token_equals_unpacked(tmp_path, tokenizer, tiny_model):
    """Every scored token of a packed row has the loss it has alone: no attention across examples, positions
    restart, the step into the next example is not scored, and the completion-only mask is kept."""
    model = copy.deepcopy(tiny_model).eval()
    trainer = _trainer(tmp_path, tokenizer, model, packing=True, batch=len(ROWS))
    packed = next(iter(trainer.get_train_dataloader()))
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist() + [packed["input_ids"].shape[1]]
    assert len(starts) - 1 == len(ROWS)
    with torch.no_grad():
        together = _token_nll(model, packed)
        alone = torch.cat([_token_nll(model, {"input_ids": packed["input_ids"][:, a:b],
                                              "labels": packed["labels"][:, a:b]})
                           for a, b in zip(starts, starts[1:])])
        # The examples unpacked, as the padded collator of an unpacked run batches them.
        unpacked = _trainer(tmp_path, tokenizer, model, packing=False, batch=len(ROWS))
        padded = next(iter(unpacked.get_train_dataloader()))
        assert int((padded["labels"][:, 1:] != -100).sum()) == together.numel()
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(together.sum(), _token_nll(model, padded).sum(), rtol=1e-5, atol=1e-4)
        # The check has teeth: one long sequence (positions not restarted) attends across examples.
        leaky = {"input_ids": packed["input_ids"], "labels": packed["labels"],
                 "position_ids": torch.arange(packed["input_ids"].shape[1])[None]}
        assert (_token_nll(model, leaky) - together).abs().max() > 1e-3
        # And the trainer's loss on the packed row is their mean.
        loss = trainer.compute_loss(model.train(), dict(packed))
        torch.testing.assert_close(loss, together.mean(), rtol=1e-5, atol=1e-6)


def test_masked_thought_only_touches_response_tokens_when_packed(tmp_path, tokenizer, tiny_model):
    from reasontrain.models.loading import add_mean_initialized_token

    tok, model = copy.deepcopy(tokenizer), copy.deepcopy(tiny_model)
    mask_id = add_mean_initialized_token(model, tok, "<mask>")
    trainer = _trainer(tmp_path, tok, model, packing=True, max_rate=0.9, mask_id=mask_id)
    fed, collated = [], []
    model.register_forward_pre_hook(lambda mod, a, kw: fed.append(kw["input_ids"].clone()), with_kwargs=True)
    compute_loss = trainer.compute_loss

    def spy(model, inputs, **kw):
        collated.append((inputs["input_ids"].clone(), inputs["labels"].clone(), inputs["position_ids"].clone()))
        return compute_loss(model, inputs, **kw)

    trainer.compute_loss = spy
    trainer.train()
    assert len(fed) == len(collated) == 3
    for noisy, (original, labels, positions) in zip(fed[1:], collated[1:]):
        response = labels != -100
        assert not response[positions == 0].any(), "the first token of each packed example is never scored"
        assert torch.equal(noisy[~response], original[~response]), "prompt tokens must not be masked"
        assert (noisy[response] == mask_id).float().mean() > 0.5
