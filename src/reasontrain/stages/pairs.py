"""Full-solution preference pairs from graded samples: one correct response against one incorrect one."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from reasontrain.stages.base import is_main_process, run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl


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
