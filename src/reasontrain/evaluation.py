"""The evaluation harness: greedy pass@1, and pass@k / maj@k from n samples, with per-problem records."""

from __future__ import annotations

from collections import Counter
from math import comb

from reasontrain.config import Extractor, OnLongPrompt
from reasontrain.data.formats import render_prompt
from reasontrain.distributed import dist_info, gather_in_order, shard
from reasontrain.generation import SamplingParams, generate
from reasontrain.grading import grade_many


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k draws is correct) from c correct out of n samples."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(verdicts) -> bool:
    """maj@k: is the most frequent extracted answer (ties: first seen) a correct one?"""
    answers = [v.predicted for v in verdicts if v.predicted is not None]
    if not answers:
        return False
    top = Counter(answers).most_common(1)[0][0]
    return next(v.correct for v in verdicts if v.predicted == top)


def grade_options(data_cfg) -> dict:
    """Keyword options for `grade`/`grade_many` from a benchmark's `grading` config."""
    g = data_cfg.grading
    return {"extractors": tuple(Extractor(e).value for e in g.extractors), "final_markers": tuple(g.final_markers),
            "rel_tol": g.rel_tol, "percent_scaling": g.percent_scaling, "timeout": g.timeout, "truncated_is_wrong": g.truncated_is_wrong}


def grade_across_ranks(responses: list[str], golds: list[str], truncated: list[bool], desc: str = "grading",
                       progress: bool = True, **options) -> list:
    """`grade_many` split across torchrun ranks: each rank grades its contiguous shard with its share of the
    node's cores, and the verdicts are gathered back in order on every rank (plain `grade_many` in one process)."""
    import os

    rank, world = dist_info()
    if world == 1:
        return grade_many(responses, golds, truncated=truncated, desc=desc, progress=progress, **options)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    workers = max(1, min(8, (os.cpu_count() or 1) // per_node))
    idx = shard(list(range(len(responses))), rank, world)
    local = grade_many([responses[i] for i in idx], [golds[i] for i in idx], truncated=[truncated[i] for i in idx],
                       workers=workers, progress=progress and rank == 0, desc=desc, **options)
    return gather_in_order(local)


def accuracy_by(records: list[dict], correct: list[bool], key: str) -> dict:
    """{value of `key`: {"pass@1", "n"}}, values sorted."""
    groups: dict = {}
    for r, ok in zip(records, correct):
        groups.setdefault(str(r[key]), []).append(ok)
    return {g: {"pass@1": sum(v) / len(v), "n": len(v)} for g, v in sorted(groups.items())}


def evaluate_split(model, tokenizer, records: list[dict], cfg, split: str, model_path: str | None = None,
                   shots: list[dict] | None = None):
    """(metrics, rows) for one split. `cfg` is the root config (data, generation, eval).

    Prompts longer than `data.max_prompt_length` tokens are counted (`long_prompts`) and, with
    `data.on_long_prompt=skip`, left out (`skipped.long_prompt`); pass@1 is over the problems evaluated."""
    from reasontrain.data.tasks import DataError

    prompts = [render_prompt(r, cfg.data, tokenizer, shots, prefill=cfg.eval.prefill) for r in records]
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False).input_ids] if prompts else []
    long = [n > cfg.data.max_prompt_length for n in lengths]
    metrics: dict = {"long_prompts": sum(long)}
    if any(long) and cfg.data.on_long_prompt == OnLongPrompt.skip:
        metrics["skipped"] = {"long_prompt": sum(long)}
        records = [r for r, x in zip(records, long) if not x]
        prompts = [p for p, x in zip(prompts, long) if not x]
        if not records:
            raise DataError(f"split {split!r}: every prompt is longer than data.max_prompt_length="
                            f"{cfg.data.max_prompt_length} tokens (data.on_long_prompt=skip)")
    gen, ev = cfg.generation, cfg.eval
    options = grade_options(cfg.data)
    stop = tuple(dict.fromkeys([*gen.stop, *cfg.data.stop]))
    rows = [{"id": r["id"], "prompt": p, "gold": r["answer"]} for r, p in zip(records, prompts)]
    metrics["num_problems"] = len(records)
    if ev.greedy:
        outs = generate(model, tokenizer, prompts,
                        SamplingParams(n=1, temperature=0.0, max_new_tokens=gen.max_new_tokens, stop=stop),
                        gen, desc=f"eval {split} greedy", model_path=model_path)
        verdicts = grade_across_ranks([o[0].text for o in outs], [r["answer"] for r in records],
                                      truncated=[o[0].truncated for o in outs], desc=f"grade {split}", **options)
        for row, o, v in zip(rows, outs, verdicts):
            row.update(completion=o[0].text, finish_reason=o[0].finish_reason, predicted=v.predicted,
                       correct=v.correct, reason=v.reason)
        n = max(1, len(records))
        metrics.update({
            "pass@1": sum(v.correct for v in verdicts) / n,
            "no_answer_rate": sum(v.reason == "no_answer" for v in verdicts) / n,
            "truncation_rate": sum(o[0].truncated for o in outs) / n,
            "mean_completion_tokens": sum(o[0].num_tokens for o in outs) / n,
        })
        for key in ev.breakdown:
            if records and all(key in r for r in records):
                metrics[f"by_{key}"] = accuracy_by(records, [v.correct for v in verdicts], key)
    if ev.n_samples > 0:
        outs = generate(model, tokenizer, prompts,
                        SamplingParams(n=ev.n_samples, temperature=ev.temperature, top_p=ev.top_p,
                                       max_new_tokens=gen.max_new_tokens, stop=stop, seed=cfg.seed),
                        gen, desc=f"eval {split} n={ev.n_samples}", model_path=model_path)
        per_k = {k: 0.0 for k in ev.k if k <= ev.n_samples}
        per_record: dict[int, list[float]] = {k: [] for k in per_k}
        maj = 0
        flat = grade_across_ranks([c.text for o in outs for c in o],
                                  [r["answer"] for r, o in zip(records, outs) for _ in o],
                                  truncated=[c.truncated for o in outs for c in o], desc=f"grade {split} samples",
                                  **options)
        for i, (row, o, r) in enumerate(zip(rows, outs, records)):
            vs = flat[i * ev.n_samples:(i + 1) * ev.n_samples]
            row["samples"] = [{"completion": c.text, "finish_reason": c.finish_reason, "predicted": v.predicted,
                               "correct": v.correct} for c, v in zip(o, vs)]
            c = sum(v.correct for v in vs)
            for k in per_k:
                per_k[k] += pass_at_k(ev.n_samples, c, k)
                per_record[k].append(pass_at_k(ev.n_samples, c, k))
            maj += majority_correct(vs)
        n = max(1, len(records))
        metrics.update({f"pass@{k}_sampled": v / n for k, v in per_k.items()})
        metrics[f"maj@{ev.n_samples}"] = maj / n
        for key in ev.breakdown:  # e.g. pass@8 by number of operations: where sampling finds what greedy misses
            if records and all(key in r for r in records):
                metrics[f"sampled_by_{key}"] = {
                    f"pass@{k}": {g: v["pass@1"] for g, v in accuracy_by(records, per_record[k], key).items()}
                    for k in per_k}
    return metrics, rows
