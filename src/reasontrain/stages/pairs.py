"""Preference pairs: full-solution pairs from graded samples (one correct response against one incorrect one), and
RISE's training mix of those with the error-injected step pairs."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from reasontrain.distributed import is_main_process
from reasontrain.stages.base import run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl
from reasontrain.stages.edit import edit_pair_stats, mix_pairs


def usable_as_chosen(question: str, response: str, blacklist: list[str]) -> bool:
    """A correct response that does not correct itself (RISE). A question that itself talks about being
    wrong or correct is exempt, since its answers legitimately use those words."""
    if not response.strip():
        return False
    if any(w in question.lower() for w in ("wrong", "correct")):
        return True
    low = response.lower()
    return not any(phrase.lower() in low for phrase in blacklist)


def full_pairs(rows: list[dict], pairs_per_question: int, blacklist: list[str], seed: int) -> tuple[list, Counter]:
    """(pairs, counts of questions skipped per reason)."""
    rng = random.Random(seed)
    pairs, skipped = [], Counter()
    for r in rows:
        pos = [c for c, ok in zip(r["completions"], r["correct"]) if ok and usable_as_chosen(r["question"], c, blacklist)]
        neg = [c for c, ok in zip(r["completions"], r["correct"]) if not ok and c.strip()]
        if not pos:
            skipped["no_usable_correct_sample"] += 1
            continue
        if not neg:
            skipped["no_incorrect_sample"] += 1
            continue
        for _ in range(pairs_per_question):
            pairs.append({"id": r["id"], "kind": "full", "question": r["question"], "prompt": r["prompt"],
                          "chosen": rng.choice(pos),
                          "rejected": rng.choice(neg)})
    return pairs, skipped


def full_pairs_stage(cfg, run_dir: Path, graded_path: Path) -> Path:
    p = cfg.preference
    key = stage_key_from(cfg, reads=("preference.pairs_per_question", "preference.chosen_blacklist", "seed"),
                         inputs={"graded": graded_path})

    def run(folder: Path) -> dict:
        rows = read_jsonl(graded_path)
        pairs, skipped = full_pairs(rows, p.pairs_per_question, list(p.chosen_blacklist), cfg.seed)
        if is_main_process():
            write_jsonl(folder / "pairs.jsonl", pairs)
        return {"questions": len(rows), "pairs": len(pairs), "skipped": dict(skipped)}

    folder, _ = run_stage(run_dir, "pairs", key, run)
    return folder / "pairs.jsonl"


def mix_stage(cfg, run_dir: Path, full_path: Path, edit_path: Path, policy_dir: str) -> tuple[Path, dict]:
    """The training pairs (full + N edit pairs per question) and their statistics."""
    r = cfg.rise
    key = stage_key_from(cfg, reads=("rise.edits_per_question", "rise.use_full_pairs", "seed"),
                         inputs={"full": full_path, "edit": edit_path, "tokenizer": policy_dir})

    def run(folder: Path) -> dict:
        from transformers import AutoTokenizer

        full, edits = read_jsonl(full_path), read_jsonl(edit_path)
        mixed = mix_pairs(full, edits, r.edits_per_question, r.use_full_pairs, cfg.seed)
        if is_main_process():
            write_jsonl(folder / "pairs.jsonl", mixed)
        tokenizer = AutoTokenizer.from_pretrained(str(policy_dir), trust_remote_code=cfg.model.trust_remote_code)
        return {"full": sum(p["kind"] == "full" for p in mixed), "edit": sum(p["kind"] == "edit" for p in mixed),
                "edit_stats": edit_pair_stats(mixed, tokenizer)}

    folder, summary = run_stage(run_dir, "mix", key, run)
    return folder / "pairs.jsonl", summary
