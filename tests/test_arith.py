"""The arithmetic task: deterministic per seed, disjoint splits, and answers that are right when recomputed
from the question text alone."""

import json
import re
from pathlib import Path

from reasontrain.data import arith
from reasontrain.data.arith import ArithDifficulty, check_solution, generate

# Each template sentence maps back to its operation, so the test recomputes answers from the words.
_SENTENCE_OPS = [
    (re.compile(r"\w+ (?:gets|finds|buys) (\d+) more\."), lambda v, n: v + n),
    (re.compile(r"\w+ (?:gives away|loses|sells) (\d+)\."), lambda v, n: v - n),
    (re.compile(r"\w+ ends up with (\d+) times as many\."), lambda v, n: v * n),
    (re.compile(r"The pile grows (\d+) times\."), lambda v, n: v * n),
]


def answer_from_question(question: str) -> int:
    sentences = re.findall(r"[^.?]+[.?]", question)
    value = int(re.match(r"\w+ has (\d+) \w+\.", sentences[0].strip()).group(1))
    for s in sentences[1:-1]:
        s = s.strip()
        for pattern, fn in _SENTENCE_OPS:
            m = pattern.fullmatch(s)
            if m:
                value = fn(value, int(m.group(1)))
                break
        else:
            raise AssertionError(f"unrecognised sentence {s!r}")
    assert sentences[-1].strip().startswith("How many")
    return value


def test_same_seed_same_problems_and_other_seed_differs():
    d = ArithDifficulty()
    assert generate(50, 7, d) == generate(50, 7, d)
    assert generate(50, 7, d) != generate(50, 8, d)


def test_answers_are_right_when_recomputed_from_the_question():
    for d in (ArithDifficulty(), ArithDifficulty(min_steps=5, max_steps=5)):
        for p in generate(400, 3, d):
            assert answer_from_question(p["question"]) == int(p["answer"]), p
            assert check_solution(p), p
            assert d.min_steps <= p["num_steps"] <= d.max_steps
            assert 0 <= int(p["answer"]) <= d.max_value


def test_solution_format_is_steps_then_final_answer_line():
    p = generate(1, 0, ArithDifficulty())[0]
    lines = p["solution"].splitlines()
    assert all(re.fullmatch(rf"Step {i + 1}: \d+ [-+x] \d+ = \d+", line) for i, line in enumerate(lines[:-1]))
    assert lines[-1] == f"{arith.ANSWER_PREFIX}{p['answer']}"


def test_check_solution_catches_a_miscalculation():
    p = generate(1, 0, ArithDifficulty())[0]
    first = p["solution"].splitlines()[0]
    wrong = re.sub(r"= (\d+)$", lambda m: f"= {int(m.group(1)) + 1}", first)
    assert not check_solution({**p, "solution": p["solution"].replace(first, wrong)})


def _small_arith_cfg():
    from omegaconf import OmegaConf

    from reasontrain.config import DataConfig

    cfg = OmegaConf.structured(DataConfig)
    cfg.arith.train.size, cfg.arith.test.size, cfg.arith.hard.size = 2000, 200, 200
    cfg.arith.validation.size, cfg.arith.pretrain.size = 200, 600
    return cfg


def test_splits_are_disjoint_and_hard_is_harder():
    from reasontrain.data.tasks import arith_splits

    splits = arith_splits(_small_arith_cfg())
    questions = {k: {p["question"] for p in v} for k, v in splits.items() if k != "pretrain"}
    for a in questions:
        for b in questions:
            if a < b:
                assert not questions[a] & questions[b], (a, b)
    mean_steps = {k: sum(p["num_steps"] for p in v) / len(v) for k, v in splits.items() if k != "pretrain"}
    assert mean_steps["hard"] > mean_steps["test"] + 1.5
    assert abs(mean_steps["validation"] - mean_steps["test"]) < 0.3  # same distribution as test


def test_train_seed_gives_fresh_problems_with_the_same_held_out_splits():
    from reasontrain.data.tasks import arith_splits

    cfg = _small_arith_cfg()
    first = arith_splits(cfg, ("train", "test", "validation"))
    cfg.arith.train_seed = 99
    second = arith_splits(cfg, ("train", "test", "validation"))
    assert first["test"] == second["test"] and first["validation"] == second["validation"]
    overlap = {p["question"] for p in first["train"]} & {p["question"] for p in second["train"]}
    assert len(overlap) < 0.2 * len(first["train"])


def test_pretrain_corpus_never_shows_the_solution_format_or_a_held_out_question():
    from reasontrain.data.tasks import arith_splits

    splits = arith_splits(_small_arith_cfg(), ("pretrain", "test", "hard", "validation"))
    docs = [r["text"] for r in splits["pretrain"]]
    assert len(docs) == 600 and all("question" not in r for r in splits["pretrain"])
    assert not any("Step" in d or arith.ANSWER_PREFIX.strip() in d for d in docs)
    # Every equation in the corpus is right.
    for d in docs:
        for a, op, b, c in re.findall(r"(\d+) ([-+x]) (\d+) (?:=|is) (\d+)", d):
            assert arith._apply(op, int(a), int(b)) == int(c), d
    # Stories restate generated questions, never one of an evaluation split.
    held_out = {p["question"] for k in ("test", "hard", "validation") for p in splits[k]}
    assert not held_out & {r["story_of"] for r in splits["pretrain"]}
    story_questions = {r["story_of"] for r in splits["pretrain"]}
    assert len(story_questions) == 600 and all(r["story_of"].split(". ")[0] in r["text"] for r in splits["pretrain"])


def test_error_classes_of_the_analysis_script():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("arith_errors", ROOT / "scripts" / "arith_errors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    gold = "Step 1: 6 - 4 = 2\nStep 2: 2 x 3 = 6\n#### 6"
    assert mod.first_error("Step 1: 6 - 4 = 3\nStep 2: 3 x 3 = 9\n#### 9", gold) == "arithmetic slip"
    assert mod.first_error("Step 1: 6 - 5 = 1\n#### 1", gold) == "wrong operand"
    assert mod.first_error("Step 1: 6 + 4 = 10\n#### 10", gold) == "wrong operation"
    assert mod.first_error("Step 1: 7 - 4 = 3\n#### 3", gold) == "wrong start value"
    assert mod.first_error("Step 1: 6 - 4 = 2\nStep 2: 3 x 3 = 9\n#### 9", gold) == "wrong running value"
    assert mod.first_error("Step 1: 6 - 4 = 2\n#### 2", gold) == "too few steps"
    carry_gold = "Step 1: 7 + 5 = 12\n#### 12"
    assert mod.first_error("Step 1: 7 + 5 = 11\n#### 11", carry_gold) == "carry slip"
    assert mod.first_error("Step 1: 7 + 5 = 13\n#### 13", carry_gold) == "arithmetic slip"


def test_pretrain_records_train_as_plain_text_and_word_problems_as_prompt_completion(tokenizer):
    from omegaconf import OmegaConf

    from reasontrain.config import RootConfig
    from reasontrain.stages.train_sft import build_sft_dataset

    cfg = OmegaConf.structured(RootConfig(recipe="sft"))
    pretrain = arith.pretrain_corpus(4, 0, ArithDifficulty())
    text, counts = build_sft_dataset(pretrain, cfg, tokenizer)
    assert text.column_names == ["text"] and text[0]["text"] == pretrain[0]["text"] and counts["examples"] == 4
    problems, _ = build_sft_dataset(generate(4, 0, ArithDifficulty()), cfg, tokenizer)
    assert set(problems.column_names) == {"prompt", "completion"}


def test_error_table_of_the_analysis_script_averages_runs_of_one_name(tmp_path):
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("arith_errors", ROOT / "scripts" / "arith_errors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    gold = {"id": "q", "solution": "Step 1: 7 + 5 = 12\n#### 12"}

    def run(seed: int, final: str) -> Path:
        folder = tmp_path / f"seed{seed}" / "dpo"
        for sub, completion in (("data-1", None), ("eval-start-1", "Step 1: 7 + 5 = 11\n#### 11"),
                                ("eval-final-1", final)):
            (folder / sub).mkdir(parents=True)
            if completion is None:
                (folder / sub / "test.jsonl").write_text(json.dumps(gold) + "\n")
            else:
                row = {"id": "q", "completion": completion, "correct": completion.endswith("12")}
                (folder / sub / "test.predictions.jsonl").write_text(json.dumps(row) + "\n")
        (folder / "cli.log").write_text("")
        return folder

    runs = [run(0, "Step 1: 7 + 5 = 12\n#### 12"), run(1, "Step 1: 7 + 5 = 13\n#### 13"), tmp_path / "seed0" / "x"]
    lines = mod.table(runs, "test").splitlines()
    assert "| start | 1 | 0.0 |" in lines[4] and "| dpo | 2 | 0.5 |" in lines[5] and len(lines) == 6
    assert "| carry slip |" in lines[2] and "arithmetic slip" in lines[2]
