"""dpo_loss pinned with hand-computed numbers in both modes, with weights, NLL and label smoothing."""

import math

import pytest
import torch

from reasontrain.losses import dpo_loss


def softplus_neg(x):  # -log σ(x)
    return math.log1p(math.exp(-x))


@pytest.fixture
def batch():
    t = lambda *v: torch.tensor([list(v)])  # noqa: E731
    return dict(
        policy_chosen=t(-1.0, -2.0, 0.0), reference_chosen=t(-1.5, -2.0, 0.0),
        policy_rejected=t(-1.0, -3.0, -1.0), reference_rejected=t(-1.0, -2.0, -1.0),
        chosen_mask=t(1, 1, 0), rejected_mask=t(1, 1, 1),
    )
    # Δ⁺ = [0.5, 0, (masked)], Δ⁻ = [0, -1, 0]


def test_sequence_mode(batch):
    loss, m = dpo_loss(**batch, beta=0.1)
    assert loss.item() == pytest.approx(softplus_neg(0.1 * (0.5 - (-1.0))), abs=1e-7)
    assert m["rewards/chosen"].item() == pytest.approx(0.05)
    assert m["rewards/rejected"].item() == pytest.approx(-0.1)
    assert m["rewards/margins"].item() == pytest.approx(0.15)
    assert m["rewards/accuracies"].item() == 1.0


def test_sequence_mode_with_token_weights(batch):
    w = torch.tensor([[1.0, 0.5, 2.0]])
    loss, _ = dpo_loss(**batch, beta=0.1, rejected_weights=w)
    assert loss.item() == pytest.approx(softplus_neg(0.1 * (0.5 - (-0.5))), abs=1e-7)
    wc = torch.tensor([[3.0, 1.0, 100.0]])  # the masked third position must not count
    loss, _ = dpo_loss(**batch, beta=0.1, chosen_weights=wc)
    assert loss.item() == pytest.approx(softplus_neg(0.1 * (1.5 - (-1.0))), abs=1e-7)


def test_per_position_mode_averages_over_the_whole_grid(batch):
    loss, _ = dpo_loss(**batch, beta=0.1, mode="per_position")
    expected = (softplus_neg(0.1 * 0.5) + softplus_neg(0.1 * 1.0) + softplus_neg(0.0)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-7)
    w = torch.tensor([[1.0, 0.25, 1.0]])
    loss, _ = dpo_loss(**batch, beta=0.1, mode="per_position", rejected_weights=w)
    expected = (softplus_neg(0.05) + softplus_neg(0.1 * 0.25) + softplus_neg(0.0)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-7)


def test_nll_term_is_per_token_mean_on_chosen(batch):
    base, _ = dpo_loss(**batch, beta=0.1)
    loss, m = dpo_loss(**batch, beta=0.1, nll_weight=0.5)
    assert m["nll"].item() == pytest.approx(1.5)  # -(-1 - 2) / 2 tokens
    assert (loss - base).item() == pytest.approx(0.75)


def test_label_smoothing(batch):
    loss, _ = dpo_loss(**batch, beta=0.1, label_smoothing=0.1)
    x = 0.15
    assert loss.item() == pytest.approx(0.9 * softplus_neg(x) + 0.1 * softplus_neg(-x), abs=1e-7)


def test_gradient_flows_only_through_policy(batch):
    b = {k: v.clone().requires_grad_(k.startswith(("policy", "reference"))) if v.dtype.is_floating_point else v
         for k, v in batch.items()}
    loss, _ = dpo_loss(**b, beta=0.1)
    loss.backward()
    assert b["policy_chosen"].grad[0, 2] == 0  # masked position
    assert b["policy_chosen"].grad[0, 0] < 0  # raising chosen log-prob lowers the loss
    assert b["policy_rejected"].grad[0, 0] > 0


def test_bad_mode(batch):
    with pytest.raises(ValueError, match="mode"):
        dpo_loss(**batch, mode="tokens")
