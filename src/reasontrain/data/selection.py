"""Training data chosen from graded samples: cDPO's answer-frequency selection (ALGORITHMS.md §2.2) and
rejection-sampling SFT's distinct correct samples.

Input rows are `graded.jsonl` rows of the grade stage: `completions`, `correct`, `predicted` (the extracted
answer, None when there was none) per sample, plus the problem record's fields.
"""

from __future__ import annotations

import math
import random
from collections import Counter


def answer_groups(row: dict, correct: bool) -> list[tuple[str, list[str]]]:
    """[(answer, its responses)] for the correct (or incorrect) samples of a question, most frequent answer first
    (ties: the answer seen first). Samples with no extracted answer or an empty response are left out (§2.2)."""
    groups: dict[str, list[str]] = {}
    for text, ok, pred in zip(row["completions"], row["correct"], row["predicted"]):
        if bool(ok) != correct or pred is None or not str(pred).strip() or not text.strip():
            continue
        groups.setdefault(str(pred), []).append(text)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))  # sorted() is stable: ties keep first-seen order


def top_p_incorrect(groups: list[tuple[str, list[str]]], top_p: float, rng: random.Random) -> list[tuple[str, str]]:
    """[(answer, one response)] for the negative model: one response per wrong answer, most frequent first, until
    the answers taken cover ⌈top_p × #incorrect samples⌉. After the first answer, only answers seen more than once
    are taken (a one-off wrong answer is noise, not a systematic error)."""
    total = sum(len(r) for _, r in groups)
    target = math.ceil(top_p * total)
    out, covered = [], 0
    for i, (answer, responses) in enumerate(groups):
        if covered >= target or (i > 0 and len(responses) < 2):
            break
        out.append((answer, rng.choice(responses)))
        covered += len(responses)
    return out


def cdpo_selection(rows: list[dict], top_p: float, seed: int) -> tuple[list[dict], list[dict], list[dict], Counter]:
    """(positive SFT records, negative SFT records, DPO pairs, questions skipped per reason).

    Positive: one response of the most frequent correct answer. Negative: `top_p_incorrect`. Pair: a response of the
    most frequent correct answer (chosen) against one of the most frequent incorrect answer (rejected); a question
    needs both. SFT records keep the problem fields with `solution` set to the response.
    """
    rng = random.Random(seed)
    positive, negative, pairs, skipped = [], [], [], Counter()
    for row in rows:
        base = {k: row[k] for k in ("id", "question", "answer") if k in row}
        right, wrong = answer_groups(row, True), answer_groups(row, False)
        if right:
            positive.append({**base, "solution": rng.choice(right[0][1]), "selected_answer": right[0][0]})
        for answer, response in top_p_incorrect(wrong, top_p, rng):
            negative.append({**base, "solution": response, "selected_answer": answer})
        if not right or not wrong:
            skipped["no_correct_answer" if not right else "no_incorrect_answer"] += 1
            continue
        pairs.append({"id": row["id"], "kind": "full", "question": row["question"], "prompt": row["prompt"],
                      "gold_solution": row.get("solution"), "answer": row.get("answer"),
                      "chosen": rng.choice(right[0][1]), "rejected": rng.choice(wrong[0][1]),
                      "chosen_answer": right[0][0], "rejected_answer": wrong[0][0],
                      "rejected_count": len(wrong[0][1]), "incorrect_samples": sum(len(r) for _, r in wrong)})
    return positive, negative, pairs, skipped


def correct_samples(rows: list[dict], dedup: bool = True, max_per_question: int | None = None) -> list[dict]:
    """SFT records (`solution` = the response) of every correct sample, distinct per question when `dedup`,
    at most `max_per_question` per question (first ones kept), in question order."""
    out = []
    for row in rows:
        base = {k: row[k] for k in ("id", "question", "answer") if k in row}
        seen, kept = set(), 0
        for text, ok in zip(row["completions"], row["correct"]):
            if not ok or not text.strip() or (dedup and text in seen):
                continue
            if max_per_question is not None and kept >= max_per_question:
                break
            seen.add(text)
            kept += 1
            out.append({**base, "solution": text})
    return out
