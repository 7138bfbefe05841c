"""OREAL's stages: difficulty rebalancing of the prompt pool, and the online training loop."""

from __future__ import annotations

import bisect
import json
import logging
from pathlib import Path

from reasontrain.config import to_plain
from reasontrain.data.formats import prompt_key, render_prompt
from reasontrain.stages.base import distributed_key, is_main_process, run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl

log = logging.getLogger("reasontrain")


def bucket_repeats(pass_rates: list[float], edges: list[float], repeats: list[int]) -> list[int]:
    """How many copies of each prompt: `repeats[i]` for a pass rate in [edges[i-1], edges[i])."""
    return [repeats[bisect.bisect_right(edges, p)] for p in pass_rates]


def rebalance_stage(cfg, run_dir: Path, policy_dir: str, questions_path: Path) -> Path:
    """`prompts.jsonl`: the prompt pool with its rendered `prompt`, the starting policy's `pass_rate` on it, and
    each prompt repeated by its difficulty bucket (section 3.2; prompts the policy already solves are dropped)."""
    r, o = cfg.oreal.rebalance, cfg.oreal
    max_new = o.max_new_tokens or cfg.generation.max_new_tokens
    key = stage_key_from(cfg, reads=("oreal.rebalance", "data.grading", "generation", "model.dtype", "seed"),
                         inputs={"policy": policy_dir, "questions": questions_path}, prompt=prompt_key(cfg.data),
                         max_new_tokens=max_new)

    def run(folder: Path) -> dict:
        from reasontrain.models.loading import load_pretrained

        records = read_jsonl(questions_path)[: r.max_prompts]
        model, tokenizer = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
        for rec in records:
            rec["prompt"] = render_prompt(rec, cfg.data, tokenizer)
        if not r.enabled:
            if is_main_process():
                write_jsonl(folder / "prompts.jsonl", records)
            return {"pool": len(records), "prompts": len(records), "rebalanced": False}
        rates = measure_pass_rates(cfg, model, tokenizer, records, max_new, str(policy_dir))
        copies = bucket_repeats(rates, list(r.edges), list(r.repeats))
        rows = []
        for rec, p, n in zip(records, rates, copies):
            rows += [{**rec, "pass_rate": p}] * n
        if is_main_process():
            write_jsonl(folder / "prompts.jsonl", rows)
        buckets = {}
        bounds = [0.0, *r.edges, 1.0]
        for i in range(len(r.repeats)):
            inside = [p for p in rates if bisect.bisect_right(r.edges, p) == i]
            buckets[f"[{bounds[i]:.2f},{bounds[i + 1]:.2f}{']' if i == len(r.repeats) - 1 else ')'}"] = {
                "prompts": len(inside), "repeats": r.repeats[i]}
        summary = {"pool": len(records), "prompts": len(rows), "mean_pass_rate": sum(rates) / max(1, len(rates)),
                   "buckets": buckets, "rebalanced": True}
        log.info("oreal rebalancing: %s", json.dumps(summary))
        return summary

    folder, _ = run_stage(run_dir, "rebalance", key, run)
    return folder / "prompts.jsonl"


def measure_pass_rates(cfg, model, tokenizer, records: list[dict], max_new_tokens: int, model_path: str) -> list[float]:
    """Share of `rebalance.samples` sampled responses per prompt that are correct (truncated = wrong)."""
    import torch

    from reasontrain.evaluation import grade_options
    from reasontrain.generation import SamplingParams, generate
    from reasontrain.grading import grade_many

    r = cfg.oreal.rebalance
    if torch.cuda.is_available():
        model = model.cuda()
    params = SamplingParams(n=r.samples, temperature=r.temperature, top_p=r.top_p, max_new_tokens=max_new_tokens,
                            stop=tuple(dict.fromkeys([*cfg.generation.stop, *cfg.data.stop])), seed=cfg.seed)
    outs = generate(model, tokenizer, [rec["prompt"] for rec in records], params, cfg.generation,
                    desc=f"rebalance: pass rate, K={r.samples}", model_path=model_path)
    flat = [c for row in outs for c in row]
    verdicts = grade_many([c.text for c in flat], [rec["answer"] for rec in records for _ in range(r.samples)],
                          truncated=[c.truncated for c in flat], desc="rebalance: grade",
                          **{**grade_options(cfg.data), "truncated_is_wrong": True})
    return [sum(v.correct for v in verdicts[i * r.samples:(i + 1) * r.samples]) / r.samples
            for i in range(len(records))]


# Values that never change what the loop computes: leaving them out of the key lets a changed value (or a resume
# path) continue the same stage folder.
_NOT_IN_KEY = ("resume", "save_every", "save_total_limit", "rebalance")


def train_oreal(cfg, run_dir: Path, policy_dir: str, prompts_path: Path, tracker=None) -> Path:
    """The online loop from `policy_dir` over the prompts; `final/` holds the trained policy."""
    o = cfg.oreal
    key = stage_key_from(cfg, reads=("train.micro_batch_size", "train.bf16", "train.gradient_checkpointing",
                                     "generation", "data.grading", "model.dtype", "seed"),
                         inputs={"policy": policy_dir, "prompts": prompts_path},
                         oreal={k: v for k, v in to_plain(o).items() if k not in _NOT_IN_KEY},
                         distributed=distributed_key(cfg))

    def run(folder: Path) -> dict:
        from reasontrain.models.loading import save_for_inference

        trainer = build_trainer(cfg, policy_dir, prompts_path, folder, tracker)
        history = trainer.train(resume=o.resume)
        final = folder / "final"
        with trainer.policy.full_weights() as module:
            if is_main_process():
                save_for_inference(module, trainer.tokenizer, final, safe_serialization=True)
        if is_main_process():
            log_history = [{**m, "loss": m["loss/policy"]} if "loss/policy" in m else m for m in history]
            (folder / "log_history.json").write_text(json.dumps(log_history, indent=1))
        return summarize(history, len(trainer.records))

    folder, _ = run_stage(run_dir, "oreal", key, run)
    return folder


def build_trainer(cfg, policy_dir: str, prompts_path: Path, folder: Path, tracker=None, grade_fn=None):
    """Policy, frozen reference and token RM loaded from `policy_dir`, each with its own optimizer and schedule."""
    import torch

    from reasontrain.models.loading import load_pretrained
    from reasontrain.models.token_rm import TokenRewardModel
    from reasontrain.trainers.args import deepspeed_config_path
    from reasontrain.trainers.model_engine import TrainedModel, frozen_reference
    from reasontrain.trainers.oreal import OrealTrainer, policy_freeze_steps

    o, t = cfg.oreal, cfg.train
    torch.manual_seed(cfg.seed)
    ds = deepspeed_config_path(cfg.distributed)
    policy, tokenizer = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
    reference, _ = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
    if t.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    common = dict(warmup=o.warmup_steps, total_steps=o.steps, weight_decay=o.weight_decay,
                  max_grad_norm=o.max_grad_norm, deepspeed_config=ds, micro_batch=t.micro_batch_size, bf16=t.bf16)
    rm = None
    if o.token_rm:
        rm_module = TokenRewardModel.from_policy(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code,
                                                 seed=cfg.seed)
        if t.gradient_checkpointing:
            rm_module.gradient_checkpointing_enable()
        rm = TrainedModel(rm_module, lr=o.rm_lr, min_lr=o.rm_min_lr, **common)
    # The policy's schedule counts only the steps it can move in (after the frozen ones).
    trained_policy = TrainedModel(policy, lr=o.policy_lr, min_lr=o.policy_min_lr,
                                  **{**common, "total_steps": max(1, o.steps - policy_freeze_steps(o))})
    ref = frozen_reference(reference, ds, t.micro_batch_size, t.bf16)
    records = read_jsonl(prompts_path)
    return OrealTrainer(cfg, policy=trained_policy, reference=ref, rm=rm, tokenizer=tokenizer, records=records,
                        folder=folder, tracker=tracker, grade_fn=grade_fn)


def summarize(history: list[dict], pool: int) -> dict:
    """What the run report shows: steps, pool size, last policy loss, and the pass-rate and speed averages."""
    if not history:
        return {"steps": 0, "examples": pool}
    losses = [m["loss/policy"] for m in history if "loss/policy" in m]
    first, last = history[: max(1, len(history) // 5)], history[-max(1, len(history) // 5):]
    mean = lambda rows, k: sum(m.get(k, 0.0) for m in rows) / len(rows)  # noqa: E731
    return {"steps": len(history), "examples": pool, "train_loss": losses[-1] if losses else float("nan"),
            "pass_rate_first_fifth": mean(first, "pass_rate"), "pass_rate_last_fifth": mean(last, "pass_rate"),
            "kept_fraction": mean(history, "kept_fraction"),
            "generate_share": mean(history, "time/generate_share"),
            "generate_tokens_per_s": mean(history, "tokens_per_s/generate"),
            "seconds_per_step": mean(history, "time/step")}
