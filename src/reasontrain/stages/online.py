"""The online methods' stages (OREAL, GRPO, RLOO): difficulty rebalancing of the prompt pool, and the online loop."""

from __future__ import annotations

import bisect
import json
import logging
from pathlib import Path

from reasontrain.config import Method, to_plain
from reasontrain.data.formats import prompt_key, render_prompt
from reasontrain.distributed import is_main_process
from reasontrain.stages.base import distributed_key, run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl

log = logging.getLogger("reasontrain")


def bucket_repeats(pass_rates: list[float], edges: list[float], repeats: list[int]) -> list[int]:
    """How many copies of each prompt: `repeats[i]` for a pass rate in [edges[i-1], edges[i])."""
    return [repeats[bisect.bisect_right(edges, p)] for p in pass_rates]


def rebalance_stage(cfg, run_dir: Path, policy_dir: str, questions_path: Path) -> Path:
    """`prompts.jsonl`: the prompt pool with its rendered `prompt`, the starting policy's `pass_rate` on it, and
    each prompt repeated by its difficulty bucket (section 3.2; prompts the policy already solves are dropped)."""
    r, o = cfg.online.rebalance, cfg.online
    max_new = o.max_new_tokens or cfg.generation.max_new_tokens
    key = stage_key_from(cfg, reads=("online.rebalance", "data.grading", "generation", "model.dtype", "seed"),
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

    r = cfg.online.rebalance
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


def train_online(cfg, run_dir: Path, policy_dir: str, prompts_path: Path, tracker=None) -> Path:
    """The online loop of `cfg.method` from `policy_dir` over the prompts; `final/` holds the trained policy."""
    method = Method(cfg.method).value
    key = stage_key_from(cfg, reads=("method", method, "train.micro_batch_size", "train.bf16",
                                     "train.gradient_checkpointing", "generation", "data.grading", "model.dtype",
                                     "seed"),
                         inputs={"policy": policy_dir, "prompts": prompts_path},
                         online={k: v for k, v in to_plain(cfg.online).items() if k not in _NOT_IN_KEY},
                         distributed=distributed_key(cfg))

    def run(folder: Path) -> dict:
        from reasontrain.models.loading import save_for_inference

        trainer = build_trainer(cfg, policy_dir, prompts_path, folder, tracker)
        history = trainer.train(resume=cfg.online.resume)
        final = folder / "final"
        with trainer.policy.full_weights() as module:
            if is_main_process():
                save_for_inference(module, trainer.tokenizer, final, safe_serialization=True)
        if is_main_process():
            log_history = [{**m, "loss": m["loss/policy"]} if "loss/policy" in m else m for m in history]
            (folder / "log_history.json").write_text(json.dumps(log_history, indent=1))
        return summarize(history, len(trainer.records))

    folder, _ = run_stage(run_dir, method, key, run)
    return folder


def build_trainer(cfg, policy_dir: str, prompts_path: Path, folder: Path, tracker=None, grade_fn=None):
    """The policy, its frozen reference (when there is a KL term) and the algorithm's auxiliary models, loaded from
    `policy_dir`, each with its own optimizer and schedule, in an `OnlineTrainer`."""
    import torch

    from reasontrain.models.loading import load_pretrained
    from reasontrain.trainers.algorithms import make_algorithm
    from reasontrain.trainers.args import deepspeed_config_path
    from reasontrain.trainers.model_engine import TrainedModel, frozen_reference
    from reasontrain.trainers.online import OnlineTrainer

    o, t = cfg.online, cfg.train
    torch.manual_seed(cfg.seed)
    ds = deepspeed_config_path(cfg.distributed)
    engine = dict(deepspeed_config=ds, micro_batch=t.micro_batch_size, bf16=t.bf16)
    policy, tokenizer = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
    reference = None
    if o.kl_coef:
        reference, _ = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
    if t.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    rm = None
    if cfg.method == Method.oreal and cfg.oreal.token_rm:
        from reasontrain.models.token_rm import token_reward_model

        rm_module = token_reward_model(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code, seed=cfg.seed)
        if t.gradient_checkpointing:
            rm_module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        rm = TrainedModel(rm_module, cfg.oreal.rm, total_steps=o.steps, **engine)
    algorithm = make_algorithm(cfg, rm)
    # The policy's schedule counts only the steps it can move in (after the auxiliary models' warm-up).
    trained_policy = TrainedModel(policy, o.policy, total_steps=max(1, o.steps - algorithm.freeze_steps), **engine)
    ref = frozen_reference(reference, ds, t.micro_batch_size, t.bf16) if reference is not None else None
    return OnlineTrainer(cfg, algorithm, policy=trained_policy, reference=ref, tokenizer=tokenizer,
                         records=read_jsonl(prompts_path), folder=folder, tracker=tracker, grade_fn=grade_fn)


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
