"""Self-sampling and grading stages: K completions per training question, a verdict on each, and the correct ones
kept as SFT records (RFT)."""

from __future__ import annotations

from pathlib import Path

from reasontrain.data.formats import pick_shots, prompt_key, render_prompt, shots_excluding
from reasontrain.data.selection import correct_samples
from reasontrain.data.tasks import DataError
from reasontrain.distributed import is_main_process
from reasontrain.evaluation import grade_across_ranks, grade_options
from reasontrain.generation import SamplingParams, generate
from reasontrain.models.loading import load_pretrained
from reasontrain.stages.base import run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl


def sample_stage(cfg, run_dir: Path, policy_dir: str, questions_path: Path, label: str = "sample") -> Path:
    """`samples.jsonl`: one row per question with its prompt and `n` completions (text, finish reason).

    With `sample.num_shots` > 0 the policy samples from a few-shot prompt (solved examples from the same file,
    never the question itself); the row's `prompt` stays the zero-shot one that pairs and SFT train on."""
    s = cfg.sample
    key = stage_key_from(cfg, reads=("sample", "generation", "model.dtype", "seed"),
                         inputs={"policy": policy_dir, "questions": questions_path}, prompt=prompt_key(cfg.data))

    def run(folder: Path) -> dict:
        import torch

        pool = read_jsonl(questions_path)
        records = pool[: s.max_questions]
        model, tokenizer = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
        if torch.cuda.is_available():
            model = model.cuda()
        prompts = [render_prompt(r, cfg.data, tokenizer) for r in records]
        gen_prompts, shot_ids = prompts, [[] for _ in records]
        if s.num_shots > 0:
            shots = pick_shots(pool, s.num_shots + 1, cfg.seed)
            per_record = [shots_excluding(shots, r) for r in records]
            gen_prompts = [render_prompt(r, cfg.data, tokenizer, sh) for r, sh in zip(records, per_record)]
            shot_ids = [[sh.get("id") for sh in shs] for shs in per_record]
        params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p,
                                max_new_tokens=s.max_new_tokens or cfg.generation.max_new_tokens,
                                stop=tuple(dict.fromkeys([*cfg.generation.stop, *cfg.data.stop])), seed=cfg.seed)
        outs = generate(model, tokenizer, gen_prompts, params, cfg.generation, desc=f"sample K={s.n}",
                        model_path=str(policy_dir))
        rows = [{**r, "prompt": p, "completions": [c.text for c in o], "finish_reasons": [c.finish_reason for c in o],
                 **({"sample_shots": ids} if s.num_shots > 0 else {})}
                for r, p, o, ids in zip(records, prompts, outs, shot_ids)]
        if is_main_process():
            write_jsonl(folder / "samples.jsonl", rows)
        truncated = sum(f == "length" for r in rows for f in r["finish_reasons"])
        return {"questions": len(rows), "samples": len(rows) * s.n, "truncated": truncated}

    folder, _ = run_stage(run_dir, label, key, run)
    return folder / "samples.jsonl"


def grade_stage(cfg, run_dir: Path, samples_path: Path, label: str = "grade") -> Path:
    """`graded.jsonl`: the samples with a verdict (`correct`, `reason`, `predicted`) per completion."""
    key = stage_key_from(cfg, reads=("data.grading",), inputs={"samples": samples_path})

    def run(folder: Path) -> dict:
        rows = read_jsonl(samples_path)
        flat = grade_across_ranks([c for r in rows for c in r["completions"]],
                                  [r["answer"] for r in rows for _ in r["completions"]],
                                  truncated=[f == "length" for r in rows for f in r["finish_reasons"]],
                                  desc="grade samples", **grade_options(cfg.data))
        i = 0
        for r in rows:
            k = len(r["completions"])
            vs, i = flat[i:i + k], i + k
            r["correct"] = [v.correct for v in vs]
            r["reasons"] = [v.reason for v in vs]
            r["predicted"] = [v.predicted for v in vs]
        if is_main_process():
            write_jsonl(folder / "graded.jsonl", rows)
        n = max(1, len(flat))
        mixed = sum(0 < sum(r["correct"]) < len(r["correct"]) for r in rows)
        return {"pass_rate": sum(v.correct for v in flat) / n, "questions_with_both": mixed,
                "reasons": {reason: sum(v.reason == reason for v in flat) for reason in {v.reason for v in flat}}}

    folder, _ = run_stage(run_dir, label, key, run)
    return folder / "graded.jsonl"


def correct_samples_stage(cfg, run_dir: Path, graded_path: Path) -> Path:
    """`records.jsonl`: one SFT record per kept correct sample."""
    r = cfg.rft
    key = stage_key_from(cfg, reads=("rft.dedup", "rft.max_per_question"), inputs={"graded": graded_path})

    def run(folder: Path) -> dict:
        rows = read_jsonl(graded_path)
        kept = correct_samples(rows, r.dedup, r.max_per_question)
        if not kept:
            raise DataError(f"rft: no correct sample among {sum(len(x['correct']) for x in rows)} samples in "
                             f"{graded_path}; raise sample.n or sample.temperature, or start from a better policy")
        if is_main_process():
            write_jsonl(folder / "records.jsonl", kept)
        return {"questions": len(rows), "examples": len(kept),
                "questions_with_correct": len({x["id"] for x in kept}),
                "correct_samples": sum(sum(map(bool, x["correct"])) for x in rows)}

    folder, _ = run_stage(run_dir, "rft-select", key, run)
    return folder / "records.jsonl"
