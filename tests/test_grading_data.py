"""The grader on real benchmark data: every GSM8K test solution and (>= 99% of) every MATH-500 solution graded
against its own gold answer is correct, so are MATH-500 answers restyled as a model might write them, and MATH-500
answers are not confused with other problems' answers."""

import json
from pathlib import Path

import pytest

from reasontrain.grading import grade_many
from reasontrain.grading.normalize import clean, comparison_key

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _rows(relative: str) -> list[dict]:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path}")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def test_every_gsm8k_solution_matches_its_own_answer():
    rows = _rows("gsm8k/test.jsonl")
    assert len(rows) == 1319
    verdicts = grade_many([r["answer"] for r in rows], [r["answer"] for r in rows], workers=2, progress=False)
    misses = [(i, v) for i, v in enumerate(verdicts) if not v.correct]
    assert not misses, misses[:10]
    # The same with only the `####` extractor, as an MFT-style GSM8K benchmark demands.
    verdicts = grade_many([r["answer"] for r in rows], [r["answer"] for r in rows], extractors=("hashes",),
                          workers=2, progress=False)
    assert all(v.correct for v in verdicts)


def test_math500_solutions_match_their_answers():
    rows = _rows("math500/test.jsonl")
    assert len(rows) == 500
    verdicts = grade_many([r["solution"] for r in rows], [r["answer"] for r in rows], workers=2, progress=False)
    misses = [(r["unique_id"], r["answer"], v.predicted, v.reason) for r, v in zip(rows, verdicts) if not v.correct]
    print(f"MATH-500 misses: {len(misses)} of {len(rows)}")
    for miss in misses:
        print("  ", miss)
    assert len(misses) <= 5, misses


RESTYLES = {
    "minerva": lambda a: f"Final Answer: The final answer is ${a}$. I hope it is correct.",
    "dfrac, no spaces": lambda a: "\\boxed{" + a.replace("\\frac", "\\dfrac").replace(" ", "") + "}",
    "answer is, boxed": lambda a: f"So the answer is $\\boxed{{ {a} }}$.",
}


@pytest.mark.parametrize("style", RESTYLES)
def test_math500_answers_restyled_still_match(style):
    golds = [r["answer"] for r in _rows("math500/test.jsonl")]
    responses = [RESTYLES[style](a) for a in golds]
    verdicts = grade_many(responses, golds, workers=2, progress=False)
    misses = [(g, v) for g, v in zip(golds, verdicts) if not v.correct]
    assert len(misses) <= 5, misses


def test_math500_answers_are_not_equal_to_other_problems_answers():
    rows = _rows("math500/test.jsonl")[:200]
    golds = [r["answer"] for r in rows]
    others = golds[1:] + golds[:1]
    verdicts = grade_many([f"\\boxed{{{o}}}" for o in others], golds, workers=2, progress=False)
    false_positives = [(g, o) for g, o, v in zip(golds, others, verdicts)
                       if v.correct and comparison_key(clean(g)) != comparison_key(clean(o))]
    assert not false_positives
    assert all(v.reason in ("correct", "wrong") for v in verdicts)
