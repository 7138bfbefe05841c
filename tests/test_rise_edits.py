"""RISE data construction on real arith solutions: step splitting, rule-based error injection, filters, mixing."""

import json
import random
import re

import pytest
from omegaconf import OmegaConf

from reasontrain.config import RootConfig
from reasontrain.data.arith import ArithDifficulty, check_solution, generate
from reasontrain.data.errors import ERROR_TYPES, candidate_types, inject, levenshtein, rule_edit
from reasontrain.stages.edit import (differing_tokens, edit_pair_stats, mix_pairs, span_to_edit, split_steps,
                                    step_pairs_stage, strip_boxed)
from reasontrain.stages.pairs import full_pairs, usable_as_chosen

SOLUTIONS = generate(200, 11, ArithDifficulty())
NUM = re.compile(r"(?<!Step )\b\d+\b")


def test_split_steps_covers_the_solution_in_order():
    for p in SOLUTIONS:
        steps = split_steps(p["solution"])
        assert len(steps) == p["num_steps"]
        assert steps[-1][0] + steps[-1][1] == p["solution"]
        for i, (before, step) in enumerate(steps):
            assert before.endswith(f"Step {i + 1}:")
            assert "\nStep" not in step
        assert steps[-1][1].endswith(f"#### {p['answer']}")


def test_split_steps_after_a_step_one_prefill_counts_the_opening_text_as_step_one():
    # RISE samples with the prompt prefilled up to "Step 1: ", so the completion opens inside step 1.
    completion = "Ann gets 5. 7 + 5 = 12\nStep 2: Ann loses 2. 12 - 2 = 10\n#### 10"
    steps = split_steps(completion, opened=True)
    assert [s for _, s in steps] == ["Ann gets 5. 7 + 5 = 12", " Ann loses 2. 12 - 2 = 10\n#### 10"]
    assert steps[0][0] == "" and steps[1][0] == "Ann gets 5. 7 + 5 = 12\nStep 2:"
    assert len(split_steps(completion)) == 1  # without the prefill the opening text is not a step


def test_span_to_edit_keeps_the_last_four_sentences():
    step = " One. Two. Three. Four. Five. 2 + 3 = 5"
    start, end = span_to_edit(step)
    assert step[start:end] == "Three. Four. Five. 2 + 3 = 5"


@pytest.mark.parametrize("error_type", ERROR_TYPES)
def test_each_error_type_makes_a_small_wrong_edit(error_type):
    made = 0
    for p in SOLUTIONS:
        for _, step in split_steps(p["solution"]):
            if error_type not in candidate_types(step):
                continue
            edited = inject(step, error_type, random.Random(0))
            if edited is None:
                continue
            made += 1
            assert edited != step
            assert levenshtein(step, edited) <= 8, (step, edited)
            if error_type == "change_multi_value":
                # Related values change together: every occurrence of one number, sentence included.
                changed = {a for a, b in zip(NUM.findall(step), NUM.findall(edited)) if a != b}
                assert len(changed) == 1 and NUM.findall(step).count(changed.pop()) >= 1
            else:
                # The edited solution no longer checks out.
                assert not check_solution({**p, "solution": p["solution"].replace(step, edited)}), (step, edited)
    if error_type != "swap":  # arith never subtracts a bigger number, so swapped terms rarely apply
        assert made > 50


def test_rule_edit_is_seeded_and_respects_allowed_types():
    step = " Gus gets 7 more. 24 + 7 = 31"
    assert rule_edit(step, random.Random(3)) == rule_edit(step, random.Random(3))
    assert rule_edit(step, random.Random(3), allowed=("change_symbol",)).error_type == "change_symbol"
    assert rule_edit(" No numbers here.", random.Random(0)) is None


def test_strip_boxed():
    assert strip_boxed(r"so \boxed{\frac{1}{2}} and \boxed{3}.") == r"so \frac{1}{2} and 3."
    assert strip_boxed(r"cut \boxed{4") == r"cut \boxed{4"


def test_full_pairs_blacklist_and_skips():
    rows = [
        {"id": "a", "question": "q", "prompt": "P", "completions": ["good", "Let's correct that: good", "bad"],
         "correct": [True, True, False]},
        {"id": "b", "question": "q", "prompt": "P", "completions": ["x", "y"], "correct": [False, False]},
        {"id": "c", "question": "q", "prompt": "P", "completions": ["Let's correct", "z"], "correct": [True, False]},
    ]
    pairs, skipped = full_pairs(rows, 1, ["Let's correct"], seed=0)
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [("a", "good", "bad")]
    assert skipped == {"no_usable_correct_sample": 2}
    assert usable_as_chosen("Is this wrong?", "Let's correct", ["Let's correct"])  # exempt question


def test_mix_takes_n_edit_pairs_per_question():
    full = [{"id": "a", "kind": "full"}, {"id": "b", "kind": "full"}]
    edits = [{"id": "a", "kind": "edit", "step": i} for i in range(5)] + [{"id": "b", "kind": "edit", "step": 0}]
    mixed = mix_pairs(full, edits, 3, True, seed=0)
    assert [m["id"] for m in mixed if m["kind"] == "full"] == ["a", "b"]
    assert sum(m["id"] == "a" and m["kind"] == "edit" for m in mixed) == 3
    assert sum(m["id"] == "b" and m["kind"] == "edit" for m in mixed) == 1
    assert all(m["kind"] == "edit" for m in mix_pairs(full, edits, 1, False, seed=0))


def test_step_pairs_stage_on_correct_solutions(tmp_path):
    cfg = OmegaConf.structured(RootConfig(recipe="rise"))
    full = tmp_path / "full.jsonl"
    full.write_text("".join(json.dumps({"id": p["id"], "kind": "full", "question": p["question"], "prompt": "Q: x\nA: ",
                                        "chosen": p["solution"], "rejected": "wrong"}) + "\n" for p in SOLUTIONS))
    out = step_pairs_stage(cfg, tmp_path, full, policy_dir="unused")
    pairs = [json.loads(line) for line in out.open()]
    summary = json.loads((out.parent / "stage.json").read_text())["result"]
    assert summary["candidates"] == sum(p["num_steps"] for p in SOLUTIONS)
    assert summary["kept"] == len(pairs) > 0.8 * summary["candidates"]
    assert set(summary["error_types"]) >= {"change_value", "change_multi_value", "wrong_sub", "del_term",
                                           "change_symbol"}
    by_id = {p["id"]: p for p in SOLUTIONS}
    for pair in pairs:
        solution = by_id[pair["id"]]["solution"]
        assert pair["prompt"].startswith("Q: x\nA: ") and pair["prompt"].endswith(f"Step {pair['step']}:")
        assert solution.startswith(pair["prompt"][len("Q: x\nA: "):] + pair["chosen"])
        assert pair["chosen"] != pair["rejected"] and pair["edit_distance"] <= 20
        assert pair["append_eos"] is False


def test_differing_tokens_counts_the_changed_middle():
    assert differing_tokens([1, 2, 3, 4], [1, 2, 3, 4]) == 0
    assert differing_tokens([1, 2, 3, 4], [1, 9, 3, 4]) == 1
    assert differing_tokens([1, 2, 3, 4], [1, 4]) == 2  # two tokens deleted
    assert differing_tokens([5, 5], [5, 5, 5]) == 1
    assert differing_tokens([1, 2, 3, 4, 5], [1, 9, 3, 4, 8]) == 2  # two separate changes


def test_edit_pair_stats_on_hand_made_pairs(tokenizer):
    pairs = [
        {"kind": "full", "chosen": "x", "rejected": "y"},
        # step result changes (24 -> 27), 2 characters differ
        {"kind": "edit", "chosen": " Bob gets 3. 8 x 3 = 24", "rejected": " Bob gets 3. 9 x 3 = 27"},
        # operand changed, result kept
        {"kind": "edit", "chosen": " Bob gets 3. 8 x 3 = 24", "rejected": " Bob gets 3. 8 x 4 = 24"},
        # the answer step: the final answer changes
        {"kind": "edit", "chosen": " 7 + 5 = 12\n#### 12", "rejected": " 7 + 5 = 13\n#### 13"},
    ]
    stats = edit_pair_stats(pairs, tokenizer)
    assert stats["edit_pairs"] == 3
    assert stats["median_differing_tokens"] == 2  # per pair (one token per character): 2, 1, 2
    assert stats["changes_step_result"] == round(2 / 3, 4)
    assert stats["answer_step_edits"] == 1 and stats["changes_final_answer"] == 1.0
    assert edit_pair_stats(pairs[:1], tokenizer) == {"edit_pairs": 0}
