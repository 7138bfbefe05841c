"""OREAL: loop pieces pinned by hand, one trainer step on the tiny model (RM and policy updates, the actor freeze,
the token_rm=false ablation, micro-batching with global normalizers), and checkpoint round trips."""

import json
import math
import random

import pytest
import torch
from omegaconf import OmegaConf

from reasontrain.config import RootConfig
from reasontrain.losses import rloo_advantages, token_rm_loss
from reasontrain.stages.online import bucket_repeats, build_trainer
from reasontrain.trainers.algorithms import select_pairs
from reasontrain.trainers.checkpoint import ResumeError
from reasontrain.trainers.checkpoint import find_step as find_checkpoint
from reasontrain.trainers.checkpoint import step_resume_point as resume_point
from reasontrain.trainers.model_engine import lr_schedule
from reasontrain.trainers.online import PromptSampler, Trajectory, batch_tensors


def test_grpo_advantages_by_hand():
    r = torch.tensor([[1.0, -1.0, -1.0, -1.0]])  # mean -0.5, std sqrt(0.75)
    a = rloo_advantages(r, "grpo", eps=0.0)
    s = math.sqrt(0.75)
    assert a[0].tolist() == pytest.approx([1.5 / s, -0.5 / s, -0.5 / s, -0.5 / s])
    with pytest.raises(ValueError, match="not one of"):
        rloo_advantages(r, "ppo")


def test_token_rm_loss_with_a_global_sequence_count():
    logits = torch.tensor([[2.0, 0.0], [-1.0, -1.0]])
    mask = torch.tensor([[1, 0], [1, 1]])
    per_seq = [-math.log(1 / (1 + math.exp(-2))), -math.log(1 - 1 / (1 + math.exp(1)))]
    assert token_rm_loss(logits, mask, torch.tensor([1.0, 0.0])).item() == pytest.approx(sum(per_seq) / 2)
    # Two micro-batches of one sequence each add up to the mean over the global batch of 2.
    split = sum(token_rm_loss(logits[i:i + 1], mask[i:i + 1], torch.tensor([1.0 - i]), num_sequences=2).item()
                for i in range(2))
    assert split == pytest.approx(sum(per_seq) / 2)


def test_rebalance_buckets_follow_the_official_table():
    edges, repeats = [0.2, 0.4, 0.6, 0.8], [6, 4, 4, 2, 0]
    assert bucket_repeats([0.0, 0.19, 0.2, 0.5, 0.6, 0.79, 0.8, 1.0], edges, repeats) == [6, 6, 4, 4, 2, 2, 0, 0]


def test_prompt_sampler_is_a_function_of_its_position():
    a = PromptSampler(5, seed=3)
    first = a.next(4) + a.next(4)  # crosses into the second pass
    assert sorted(first[:5]) == list(range(5))
    b = PromptSampler(5, seed=3, position=4)
    assert b.next(4) == first[4:]
    with pytest.raises(ValueError, match="empty"):
        PromptSampler(0, seed=0)


def test_select_pairs_keeps_one_correct_and_one_incorrect_of_mixed_groups():
    groups = [[True, True, True], [False, True, False], [False, False, False], [True, False, True]]
    keep = select_pairs(groups, random.Random(0))
    assert [g for g, _ in keep] == [1, 1, 3, 3]
    assert [groups[g][i] for g, i in keep] == [True, False, True, False]


@pytest.mark.parametrize("token_rm, select, kept", [
    (True, None, 4), (False, None, 12), (False, "pairs", 4), (True, "all", 12)])
def test_oreal_selects_pairs_with_the_rm_and_all_without_unless_told(token_rm, select, kept):
    """The ablation (token_rm=false) keeps all B x K responses by default; `oreal.select=pairs` keeps OREAL's
    pairs, so the two differences between OREAL and its ablation can be measured apart."""
    from omegaconf import OmegaConf

    from reasontrain.config import RootConfig
    from reasontrain.trainers.algorithms import Oreal

    cfg = OmegaConf.structured(RootConfig)
    cfg.oreal.select = select
    algo = Oreal(cfg, rm=object() if token_rm else None)
    groups = [[True, True, True], [False, True, False], [False, False, False], [True, False, True]]
    trajs = [Trajectory(g, [1], [2], correct=c, truncated=False, advantage=0.0)
             for g, group in enumerate(groups) for c in group]
    out = algo.select(trajs, 3, random.Random(0))
    assert len(out) == kept
    if kept == 4:
        assert [t.correct for t in out] == [True, False, True, False]


def test_batch_mask_marks_the_positions_that_predict_response_tokens():
    t = [Trajectory(0, [5, 6, 7], [8, 9], correct=True, truncated=False, advantage=1.0),
         Trajectory(0, [5], [8], correct=False, truncated=False, advantage=-1.0)]
    b = batch_tensors(t, pad_id=0, device="cpu")
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 8, 0, 0, 0]]
    assert b["mask"].tolist() == [[0, 0, 1, 1], [1, 0, 0, 0]]  # logits at 7 predict 8, at 8 predict 9


def test_warmup_then_cosine_to_the_min_lr():
    from reasontrain.config import OptimizerConfig

    # transformers' cosine_with_min_lr: step s of warmup W at s/W, then cosine over the remaining steps.
    schedule = lr_schedule(OptimizerConfig(lr=1.0, min_lr=0.2, warmup=2), total_steps=6)
    lrs = [schedule(s) for s in range(7)]
    assert lrs[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert lrs[4] == pytest.approx(0.2 + 0.8 * 0.5)  # half way through the cosine
    assert lrs[6] == pytest.approx(0.2)
    # A warmup below 1 is a share of the steps; min_lr 0 is transformers' plain cosine.
    plain = lr_schedule(OptimizerConfig(lr=1.0, min_lr=0.0, warmup=0.5), total_steps=4)
    assert [plain(s) for s in range(4)] == pytest.approx([0.0, 0.5, 1.0, 0.5])


# -- the trainer on the tiny model ---------------------------------------------------------------------------------

def parity_grader(texts, records, truncated):
    """Deterministic stand-in for the verifier that gives mixed groups even for an untrained model."""
    return [len(t) % 2 == 0 for t in texts]


def make_cfg(**oreal):
    cfg = OmegaConf.structured(RootConfig(recipe="oreal"))
    cfg.method = "oreal"
    cfg.online.samples_per_prompt = 4
    cfg.online.prompts_per_step = 3
    cfg.online.steps = 2
    cfg.online.policy.lr = cfg.online.policy.min_lr = 1e-3
    cfg.oreal.rm.lr = cfg.oreal.rm.min_lr = 1e-3
    cfg.online.policy.warmup = cfg.oreal.rm.warmup = 0
    cfg.oreal.actor_freeze_steps = 0
    cfg.online.save_every = 1
    cfg.generation.max_new_tokens = 16
    cfg.generation.stop = list("aeiou")  # the untrained model never writes EOS: stop strings end its responses
    cfg.train.micro_batch_size = 4
    for k, v in oreal.items():
        OmegaConf.update(cfg, k, v)
    return cfg


@pytest.fixture()
def policy_and_prompts(tmp_path, tokenizer, tiny_model):
    path = tmp_path / "policy"
    tiny_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    rows = [{"id": f"q{i}", "prompt": f"Q: {i} + {i}?\nA: ", "answer": str(2 * i)} for i in range(5)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path), prompts


def params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_one_step_updates_rm_and_policy_but_not_the_reference(policy_and_prompts, tmp_path):
    policy_dir, prompts = policy_and_prompts
    tr = build_trainer(make_cfg(), policy_dir, prompts, tmp_path / "run", grade_fn=parity_grader)
    p0, r0, ref0 = params(tr.policy.module), params(tr.algorithm.rm.module), params(tr.reference)
    m = tr.train_step()
    assert m["step"] == 1 and 0 < m["kept"] == 2 * round(m["mixed_prompts"] * 3)
    assert m["kept_fraction"] == m["kept"] / 12
    for key in ("pass_rate", "loss/positive", "loss/negative", "kl", "rm/loss", "rm/accuracy", "response_length",
                "truncation_rate", "time/generate", "time/train", "tokens_per_s/generate"):
        assert key in m and math.isfinite(m[key]), key
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy equals the reference before its first update
    assert changed(p0, tr.policy.module) and changed(r0, tr.algorithm.rm.module) and not changed(ref0, tr.reference)
    assert m["rm/loss"] == pytest.approx(math.log(2), abs=0.1)  # fresh small head: mean logit near 0


def test_actor_is_frozen_for_the_first_steps(policy_and_prompts, tmp_path):
    policy_dir, prompts = policy_and_prompts
    tr = build_trainer(make_cfg(**{"oreal.actor_freeze_steps": 1}), policy_dir, prompts, tmp_path / "run",
                       grade_fn=parity_grader)
    p0, r0 = params(tr.policy.module), params(tr.algorithm.rm.module)
    m = tr.train_step()
    assert m["actor_frozen"] and "loss/positive" not in m and m["rm/loss"] > 0
    assert not changed(p0, tr.policy.module) and changed(r0, tr.algorithm.rm.module)
    m2 = tr.train_step()
    assert not m2["actor_frozen"] and changed(p0, tr.policy.module)


def test_policy_warmup_starts_at_its_first_update(policy_and_prompts, tmp_path):
    """The frozen steps do not use up the policy's warmup; the RM's schedule runs from step 1."""
    policy_dir, prompts = policy_and_prompts
    cfg = make_cfg(**{"oreal.actor_freeze_steps": 1, "online.policy.warmup": 2, "oreal.rm.warmup": 2, "online.steps": 3,
                      "online.policy.min_lr": 0.0, "oreal.rm.min_lr": 0.0})
    tr = build_trainer(cfg, policy_dir, prompts, tmp_path / "run", grade_fn=parity_grader)
    lrs = [tr.train_step() for _ in range(2)]
    # transformers' cosine warms up from 0: the policy's schedule has not moved during the frozen step 1
    assert [m["lr/policy"] for m in lrs] == pytest.approx([0.0, 0.0])
    assert [m["lr/rm"] for m in lrs] == pytest.approx([0.0, 5e-4])
    assert tr.policy.total_steps == 2 and tr.algorithm.rm.total_steps == 3


def test_token_rm_off_keeps_every_trajectory_with_unit_weights(policy_and_prompts, tmp_path):
    policy_dir, prompts = policy_and_prompts
    tr = build_trainer(make_cfg(**{"oreal.token_rm": False, "oreal.actor_freeze_steps": 5}), policy_dir, prompts,
                       tmp_path / "run", grade_fn=parity_grader)
    assert tr.algorithm.rm is None
    p0 = params(tr.policy.module)
    m = tr.train_step()
    assert m["kept"] == 12 and m["kept_fraction"] == 1.0 and "rm/loss" not in m
    assert not m["actor_frozen"] and changed(p0, tr.policy.module)  # no RM, so no freeze


def test_micro_batches_with_global_counts_match_one_batch(policy_and_prompts, tmp_path):
    policy_dir, prompts = policy_and_prompts
    results = []
    for micro in (1, 8):
        cfg = make_cfg(**{"train.micro_batch_size": micro})
        tr = build_trainer(cfg, policy_dir, prompts, tmp_path / f"run{micro}", grade_fn=parity_grader)
        tr.train_step()
        m = tr.train_step()
        results.append((m, params(tr.policy.module), params(tr.algorithm.rm.module)))
    (m1, p1, r1), (m8, p8, r8) = results
    for key in ("loss/positive", "loss/negative", "kl", "rm/loss", "rm/accuracy"):
        assert m1[key] == pytest.approx(m8[key], rel=1e-4, abs=1e-6), key
    for a, b in ((p1, p8), (r1, r8)):
        assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_checkpoint_round_trip_continues_identically(policy_and_prompts, tmp_path):
    policy_dir, prompts = policy_and_prompts
    cfg = make_cfg(**{"online.steps": 3})
    full = build_trainer(cfg, policy_dir, prompts, tmp_path / "full", grade_fn=parity_grader).train()
    build_trainer(make_cfg(**{"online.steps": 1}), policy_dir, prompts, tmp_path / "part",
                  grade_fn=parity_grader).train()
    assert (tmp_path / "part" / "checkpoints" / "step-1" / "state.json").exists()
    resumed = build_trainer(cfg, policy_dir, prompts, tmp_path / "other", grade_fn=parity_grader)
    history = resumed.train(resume=str(tmp_path / "part" / "checkpoints"))
    assert [h["step"] for h in history] == [2, 3]
    for a, b in zip(full[1:], history):
        for key in ("pass_rate", "kept", "loss/positive", "loss/negative", "kl", "rm/loss"):
            assert (key in a) == (key in b), key  # a step that keeps no pair has no policy or RM losses
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    assert any("loss/positive" in h for h in history), "no step of the resumed run updated the policy"


def test_resume_paths_that_hold_no_checkpoint_are_errors(tmp_path):
    with pytest.raises(ResumeError, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResumeError, match="holds no checkpoint"):
        find_checkpoint(tmp_path / "empty")


@pytest.mark.parametrize("override,message", [
    ({"online.samples_per_prompt": 1}, "at least 2"),
    ({"oreal.actor_freeze_steps": 2}, "never train"),
    ({"online.rebalance.repeats": [1, 2]}, "one per bucket"),
    ({"generation.backend": "vllm"}, "generation=hf"),
])
def test_bad_oreal_values_fail_before_any_stage(override, message, tmp_path):
    from reasontrain.config import ConfigError
    from reasontrain.methods.oreal import validate

    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(**override))
    with pytest.raises(ResumeError, match="does not exist"):
        validate(make_cfg(**{"online.resume": str(tmp_path / "none")}))


def test_resume_point_prefers_the_newer_of_the_given_and_the_runs_own_checkpoint(tmp_path):
    def ckpt(folder, step):
        path = folder / f"step-{step}"
        path.mkdir(parents=True)
        (path / "state.json").write_text(json.dumps({"step": step}))
        return path

    other, own = tmp_path / "other", tmp_path / "own"
    given = ckpt(other, 2)
    assert resume_point(None, own) is None  # a fresh run
    assert resume_point(str(other), own) == given  # first start from the given checkpoint
    newer = ckpt(own, 4)  # the run got further, then crashed: the same command continues from step 4
    assert resume_point(str(other), own) == newer
    assert resume_point(None, own) == newer
    with pytest.raises(ResumeError):
        resume_point(str(tmp_path / "missing"), own)  # a wrong path stays an error even with own progress
