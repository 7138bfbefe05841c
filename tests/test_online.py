"""GRPO and RLOO on the shared online trainer: their advantages and loss pinned by hand, one step on the tiny
model, micro-batching with global normalizers, and a checkpoint round trip; the CLI end to end for both."""

import json
import math
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from test_oreal import changed, params, parity_grader, policy_and_prompts  # noqa: F401 (a fixture)

from reasontrain.config import RootConfig
from reasontrain.losses import group_advantages, policy_gradient_loss
from reasontrain.stages.online import build_trainer
from reasontrain.trainers.algorithms import Oreal, PolicyGradient, make_algorithm

# -- the pure functions ----------------------------------------------------------------------------------------

def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])
    s = math.sqrt(0.75)  # std of (1, -1, -1, -1) around -0.5
    assert group_advantages(r, "grpo", eps=0.0)[0].tolist() == pytest.approx([1.5 / s, -0.5 / s, -0.5 / s, -0.5 / s])
    assert group_advantages(r, "grpo", scale=False)[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])
    # RLOO: r_i - mean of the other three.
    assert group_advantages(r, "rloo")[0].tolist() == pytest.approx([2.0, -2 / 3, -2 / 3, -2 / 3])
    for estimator in ("grpo", "rloo"):  # a group with one outcome teaches nothing
        assert group_advantages(r, estimator)[1].tolist() == pytest.approx([0.0] * 4)
    with pytest.raises(ValueError, match="not one of"):
        group_advantages(r, "ppo")


def pg_batch():
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return logps, mask, torch.tensor([2.0, -1.0])


@pytest.mark.parametrize("loss_type,value", [
    ("dapo", -(2 * 3 - 1 * 2) / 5),  # Σ -A over the 5 tokens / 5
    ("dr_grpo", -(2 * 3 - 1 * 2) / (2 * 4)),  # / (2 sequences x max_tokens 4)
    ("grpo", -(2 * 3 / 3 - 1 * 2 / 2) / 2),  # per-sequence token mean, then the mean over sequences
])
def test_policy_gradient_loss_normalizations(loss_type, value):
    logps, mask, adv = pg_batch()
    loss, m = policy_gradient_loss(logps, None, mask, adv, loss_type=loss_type, max_tokens=4)
    assert loss.item() == pytest.approx(value) and m["kl"].item() == 0.0
    loss.backward()
    # The value is -A·1 per token, the gradient -A/normalizer on each response token (ratio = 1 on-policy).
    assert logps.grad[0, 0].item() < 0 < logps.grad[1, 0].item() and logps.grad[1, 2].item() == 0.0


@pytest.mark.parametrize("loss_type", ["dapo", "dr_grpo", "grpo"])
def test_policy_gradient_loss_summed_over_micro_batches_with_global_counts_is_the_whole_batch(loss_type):
    logps, mask, adv = pg_batch()
    ref = logps.detach() - 0.1
    whole, _ = policy_gradient_loss(logps, ref, mask, adv, loss_type=loss_type, kl_coef=0.05, max_tokens=4)
    parts = sum(policy_gradient_loss(logps[i:i + 1], ref[i:i + 1], mask[i:i + 1], adv[i:i + 1], loss_type=loss_type,
                                     kl_coef=0.05, num_tokens=5, num_sequences=2, max_tokens=4)[0] for i in range(2))
    assert parts.item() == pytest.approx(whole.item())
    with pytest.raises(ValueError, match="not one of"):
        policy_gradient_loss(logps, None, mask, adv, loss_type="bogus")


def test_kl_is_the_k3_estimator_over_response_tokens():
    logps, mask, adv = pg_batch()
    ref = logps.detach() + torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 5.0]])  # the masked 5.0 must not count
    _, m = policy_gradient_loss(logps, ref, mask, adv * 0, kl_coef=1.0)
    assert m["kl"].item() == pytest.approx((math.exp(0.1) - 0.1 - 1) / 5, rel=1e-5)


# -- the trainer on the tiny model ---------------------------------------------------------------------------

def make_cfg(method, **values):
    cfg = OmegaConf.structured(RootConfig(recipe=method))
    cfg.method = method
    cfg.online.samples_per_prompt, cfg.online.prompts_per_step, cfg.online.steps = 4, 3, 2
    cfg.online.policy.lr, cfg.online.policy.min_lr, cfg.online.policy.warmup = 1e-3, 1e-3, 0
    cfg.online.kl_coef, cfg.online.save_every = 0.0, 1
    cfg.generation.max_new_tokens = 16
    cfg.generation.stop = list("aeiou")  # the untrained model never writes EOS: stop strings end its responses
    cfg.train.micro_batch_size = 4
    for k, v in values.items():
        OmegaConf.update(cfg, k, v)
    return cfg


def test_the_method_chooses_the_algorithm():
    assert isinstance(make_algorithm(make_cfg("oreal")), Oreal)
    grpo, rloo = make_algorithm(make_cfg("grpo")), make_algorithm(make_cfg("rloo", **{"rloo.loss_type": "grpo"}))
    assert isinstance(grpo, PolicyGradient) and (grpo.estimator, grpo.loss_type) == ("grpo", "dapo")
    assert (rloo.estimator, rloo.loss_type, rloo.max_tokens) == ("rloo", "grpo", 16)
    with pytest.raises(ValueError, match="no online algorithm"):
        make_algorithm(make_cfg("dpo"))


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_one_step_trains_the_policy_on_every_trajectory(method, policy_and_prompts, tmp_path):  # noqa: F811
    policy_dir, prompts = policy_and_prompts
    tr = build_trainer(make_cfg(method), policy_dir, prompts, tmp_path / "run", grade_fn=parity_grader)
    assert tr.reference is None and tr.algorithm.auxiliary_models() == {}  # no KL term, no reward model
    p0 = params(tr.policy.module)
    m = tr.train_step()
    assert m["kept"] == 12 and m["kept_fraction"] == 1.0 and not m["actor_frozen"] and "rm/loss" not in m
    assert math.isfinite(m["loss/pg"]) and m["loss/policy"] == pytest.approx(m["loss/pg"])
    assert changed(p0, tr.policy.module)


def test_kl_loads_the_frozen_reference(policy_and_prompts, tmp_path):  # noqa: F811
    policy_dir, prompts = policy_and_prompts
    tr = build_trainer(make_cfg("grpo", **{"online.kl_coef": 0.1}), policy_dir, prompts, tmp_path / "run",
                       grade_fn=parity_grader)
    ref0 = params(tr.reference)
    first, second = tr.train_step(), tr.train_step()
    assert first["kl"] == pytest.approx(0.0, abs=1e-7) and second["kl"] > 0  # the policy moved away from it
    assert second["loss/policy"] == pytest.approx(second["loss/pg"] + 0.1 * second["kl"])
    assert not changed(ref0, tr.reference)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_micro_batches_with_global_counts_match_one_batch(loss_type, policy_and_prompts, tmp_path):  # noqa: F811
    policy_dir, prompts = policy_and_prompts
    results = []
    for micro in (1, 8):
        cfg = make_cfg("grpo", **{"train.micro_batch_size": micro, "grpo.loss_type": loss_type,
                                  "online.kl_coef": 0.05})
        tr = build_trainer(cfg, policy_dir, prompts, tmp_path / f"run{micro}", grade_fn=parity_grader)
        tr.train_step()
        results.append((tr.train_step(), params(tr.policy.module)))
    (m1, p1), (m8, p8) = results
    for key in ("loss/pg", "kl", "loss/policy"):
        assert m1[key] == pytest.approx(m8[key], rel=1e-4, abs=1e-6), key
    assert all(torch.allclose(p1[k], p8[k], atol=1e-5) for k in p1)


def test_checkpoint_round_trip_continues_identically(policy_and_prompts, tmp_path):  # noqa: F811
    policy_dir, prompts = policy_and_prompts
    cfg = make_cfg("rloo", **{"online.steps": 3})
    full = build_trainer(cfg, policy_dir, prompts, tmp_path / "full", grade_fn=parity_grader).train()
    build_trainer(make_cfg("rloo", **{"online.steps": 1}), policy_dir, prompts, tmp_path / "part",
                  grade_fn=parity_grader).train()
    state = json.loads((tmp_path / "part" / "checkpoints" / "step-1" / "state.json").read_text())
    assert state["step"] == 1 and state["sampler_position"] == 3
    resumed = build_trainer(cfg, policy_dir, prompts, tmp_path / "other", grade_fn=parity_grader)
    history = resumed.train(resume=str(tmp_path / "part" / "checkpoints"))
    assert [h["step"] for h in history] == [2, 3]
    for a, b in zip(full[1:], history):
        for key in ("pass_rate", "kept", "loss/pg"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


# -- the recipes through the CLI ---------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_recipe_end_to_end(method, tmp_path):
    from test_oreal_e2e import ENV, ROOT, TINY

    tiny = [a for a in TINY if not a.startswith("oreal.")]
    proc = subprocess.run([sys.executable, "-m", "reasontrain.cli", f"recipe={method}", *tiny, "online.steps=3",
                           f"output_root={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / method / "seed0"
    stage = next(run_dir.glob(f"{method}-*"))
    rows = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all("loss/pg" in r for r in rows)
    assert (run_dir / "final" / "model.safetensors").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["after"]) == {"test", "hard"}
