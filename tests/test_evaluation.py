"""The pass@k estimator, majority vote, and the basic grader's verdicts."""

import pytest

from reasontrain.evaluation import majority_correct, pass_at_k
from reasontrain.grading import Verdict, extract_answer, grade


def test_pass_at_k_matches_hand_computed_values():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 4, 2) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_majority_vote():
    v = lambda p, c: Verdict(c, "correct" if c else "wrong", p)  # noqa: E731
    assert majority_correct([v("3", False), v("4", True), v("4", True)])
    assert not majority_correct([v("3", False), v("3", False), v("4", True)])
    assert not majority_correct([v(None, False)])


@pytest.mark.parametrize("response,gold,correct,reason", [
    ("Step 1: 2 + 3 = 5\n#### 5", "5", True, "correct"),
    ("Step 1: 2 + 3 = 6\n#### 6", "5", False, "wrong"),
    ("so the total is \\boxed{1,234}.", "1234", True, "correct"),
    ("The answer is 0.5.", "1/2", True, "correct"),
    ("no digits at all", "5", False, "no_answer"),
    ("#### 5", "Natalia sold 48/2 = 24 clips.\n#### 72", False, "wrong"),
    ("#### 72", "Natalia sold 48/2 = 24 clips.\n#### 72", True, "correct"),
    ("#### 5", "", False, "gold_unparseable"),
])
def test_basic_grader(response, gold, correct, reason):
    v = grade(response, gold)
    assert (v.correct, v.reason) == (correct, reason)


def test_truncated_counts_as_wrong_when_asked():
    assert grade("#### 5", "5", truncated=True, truncated_is_wrong=True).reason == "truncated"
    assert grade("#### 5", "5", truncated=True).correct


def test_boxed_with_nested_braces():
    assert extract_answer("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"


def test_accuracy_breakdown_by_field():
    from reasontrain.evaluation import accuracy_by

    records = [{"level": 1}, {"level": 2}, {"level": 1}, {"level": 2}, {"level": 2}]
    out = accuracy_by(records, [True, False, False, True, True], "level")
    assert out == {"1": {"pass@1": 0.5, "n": 2}, "2": {"pass@1": 2 / 3, "n": 3}}


def test_sampled_pass_at_k_is_broken_down_like_greedy(tiny_model, tokenizer):
    """pass@k per number of operations (where sampling finds what greedy misses), consistent with the total."""
    from omegaconf import OmegaConf

    from reasontrain.config import RootConfig
    from reasontrain.data import arith
    from reasontrain.evaluation import evaluate_split

    cfg = OmegaConf.structured(RootConfig)
    cfg.eval.n_samples, cfg.eval.k, cfg.eval.breakdown = 4, [1, 4], ["num_steps"]
    cfg.generation.max_new_tokens = 8
    records = arith.generate(12, 5, arith.ArithDifficulty())
    metrics, rows = evaluate_split(tiny_model, tokenizer, records, cfg, "test")
    by = metrics["sampled_by_num_steps"]
    assert set(by) == {"pass@1", "pass@4"} and set(by["pass@4"]) == set(metrics["by_num_steps"])
    sizes = {g: v["n"] for g, v in metrics["by_num_steps"].items()}
    for k in (1, 4):
        total = sum(by[f"pass@{k}"][g] * n for g, n in sizes.items()) / len(records)
        assert total == pytest.approx(metrics[f"pass@{k}_sampled"])
