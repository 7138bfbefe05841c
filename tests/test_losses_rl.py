"""OREAL losses and cDPO's contrastive weights, pinned with hand-computed numbers."""

import math

import pytest
import torch

from reasontrain.losses import (contrastive_token_weights, oreal_loss, rloo_advantages, token_rm_loss,
                                token_rm_weights)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_contrastive_token_weights():
    pos = torch.tensor([[[2.0, 0.0], [2.0, 0.0]]])
    neg = torch.tensor([[[0.0, 2.0], [0.0, 2.0]]])
    ids = torch.tensor([[0, 1]])
    w = contrastive_token_weights(pos, neg, ids, gamma=1.0)  # contrast = [4, -2]
    assert w[0, 0].item() == pytest.approx(1 - sigmoid(6), abs=1e-6)
    assert w[0, 1].item() == pytest.approx(sigmoid(6), abs=1e-6)
    w0 = contrastive_token_weights(pos, neg, ids, gamma=0.0)  # the positive model alone
    assert w0[0, 0].item() == pytest.approx(1 - sigmoid(2), abs=1e-6)


def test_rloo_and_grpo_advantages():
    r = torch.tensor([[1.0, -1.0, -1.0, 1.0], [1.0, 1.0, 1.0, -1.0]])
    a = rloo_advantages(r)
    k, p = 4, 0.5
    assert a[0, 0].item() == pytest.approx(2 * k * (1 - p) / (k - 1))
    assert a[0, 1].item() == pytest.approx(-2 * k * p / (k - 1))
    assert a[1, 3].item() == pytest.approx(-2 * k * 0.75 / (k - 1))
    assert torch.allclose(rloo_advantages(r, "grpo")[0], r[0], atol=1e-5)  # mean 0, std 1
    assert torch.allclose(rloo_advantages(torch.ones(1, 4)), torch.zeros(1, 4))


def test_token_rm_weights_use_the_cumulative_mean():
    logits = torch.tensor([[2.0, -4.0, 0.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    wp, wn = token_rm_weights(logits, mask)
    # cumulative means 2, -1, -2/3; 2σ(x)-1 = tanh(x/2)
    assert wp[0].tolist() == pytest.approx([math.tanh(1), 0, 0, 0], abs=1e-6)
    assert wn[0].tolist() == pytest.approx([0, math.tanh(0.5), math.tanh(1 / 3), 0], abs=1e-6)


def test_token_rm_loss_is_bce_of_the_mean_logit():
    logits = torch.tensor([[2.0, -4.0, 0.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss = token_rm_loss(logits, mask, torch.tensor([1.0]))
    assert loss.item() == pytest.approx(-math.log(sigmoid(-2 / 3)), abs=1e-6)


def test_oreal_loss_terms_and_normalizers():
    lp = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]])
    mask = torch.ones(2, 2)
    adv = torch.tensor([0.5, -1.5])
    loss, m = oreal_loss(lp, ref, mask, adv, torch.tensor([True, False]))
    assert m["loss/positive"].item() == pytest.approx(0.5 * 3 / 2)
    assert m["loss/negative"].item() == pytest.approx(-0.5 * (-1.5 * 2) / 2)
    kl = ((math.e - 2) + (math.exp(-0.5) - 0.5)) / 4
    assert loss.item() == pytest.approx(0.75 + 0.75 + 0.01 * kl, abs=1e-6)
    loss.backward()
    # Negative trajectory: gradient A·ω·factor/N on each token, plus the KL part.
    kl_grad = 0.01 * (1 - math.exp(-0.5)) / 4  # d/dℓ of exp(ref-ℓ)-(ref-ℓ)-1 at ref-ℓ = -0.5
    assert lp.grad[1, 0].item() == pytest.approx(0.5 * 1.5 / 2 + kl_grad, abs=1e-6)
    # Global token counts replace the batch's own.
    loss2, m2 = oreal_loss(lp.detach(), ref, mask, adv, torch.tensor([True, False]), num_pos_tokens=6,
                           num_neg_tokens=4, num_tokens=10)
    assert m2["loss/positive"].item() == pytest.approx(0.5 * 3 / 6)
    assert m2["loss/negative"].item() == pytest.approx(1.5 * 2 * 0.5 / 4)


def test_oreal_token_weights_scale_each_side():
    lp = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]])
    wp = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # only the first positive token counts
    wn = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    _, m = oreal_loss(lp, lp, torch.ones(2, 2), torch.tensor([1.0, -1.0]), torch.tensor([True, False]),
                      pos_weights=wp, neg_weights=wn)
    assert m["loss/positive"].item() == pytest.approx(1.0 / 2)
    assert m["loss/negative"].item() == pytest.approx(0.5 * 1.0 / 2)
    assert m["kl"].item() == 0.0
