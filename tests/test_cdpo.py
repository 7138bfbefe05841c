"""cDPO and RFT: the §2.2 data selection rules, contrastive weights landing on the exact token of the training
batch (real tiny model, tokenizer and collator), the first-wrong-number analysis, and both recipes end to end."""

import json
import random
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from reasontrain.critical_report import first_wrong_number, marked, position_class, token_spans, top_tokens
from reasontrain.data.selection import answer_groups, cdpo_selection, correct_samples, top_p_incorrect


def graded_row(samples, qid="q1"):
    """samples: (text, correct, predicted)."""
    return {"id": qid, "question": "Q?", "answer": "5", "prompt": "Q: Q?\nA: ", "solution": "#### 5",
            "completions": [s[0] for s in samples], "correct": [s[1] for s in samples],
            "predicted": [s[2] for s in samples]}


ROW = graded_row([
    ("c5a", True, "5"), ("w6a", False, "6"), ("w7a", False, "7"), ("c5b", True, "5"), ("w6b", False, "6"),
    ("c50", True, "5.0"), ("w8", False, "8"), ("w7b", False, "7"), ("w6c", False, "6"), ("w9", False, "9"),
    ("no answer", False, None), ("c5c", True, "5"),
])


def test_answer_groups_sort_by_frequency_and_drop_missing_answers():
    assert answer_groups(ROW, True) == [("5", ["c5a", "c5b", "c5c"]), ("5.0", ["c50"])]
    wrong = answer_groups(ROW, False)
    assert [a for a, _ in wrong] == ["6", "7", "8", "9"] and sum(len(r) for _, r in wrong) == 7
    # Ties keep the order in which the answers were first seen.
    tie = graded_row([("x", False, "7"), ("y", False, "6"), ("z", False, "6"), ("w", False, "7")])
    assert [a for a, _ in answer_groups(tie, False)] == ["7", "6"]


def test_top_p_incorrect_stops_at_the_covered_share_and_skips_one_offs():
    rng = random.Random(0)
    wrong = answer_groups(ROW, False)  # 6 x3, 7 x2, 8 x1, 9 x1: 7 samples, top-p 0.5 covers ceil(3.5) = 4
    picked = top_p_incorrect(wrong, 0.5, rng)
    assert [a for a, _ in picked] == ["6", "7"]
    assert picked[0][1] in ("w6a", "w6b", "w6c") and picked[1][1] in ("w7a", "w7b")
    assert [a for a, _ in top_p_incorrect(wrong, 0.25, rng)] == ["6"]  # ceil(1.75) = 2 <= 3
    # After the first answer, answers seen once are never taken, whatever top_p asks for.
    assert [a for a, _ in top_p_incorrect(wrong, 1.0, rng)] == ["6", "7"]
    single = [("8", ["a"]), ("9", ["b"])]
    assert [a for a, _ in top_p_incorrect(single, 1.0, rng)] == ["8"]  # the first answer is always taken


def test_cdpo_selection_positive_negative_and_pair():
    no_right = graded_row([("w", False, "6"), ("v", False, "6")], "q2")
    no_wrong = graded_row([("c", True, "5")], "q3")
    positive, negative, pairs, skipped = cdpo_selection([ROW, no_right, no_wrong], 0.5, seed=0)
    assert [(r["id"], r["selected_answer"]) for r in positive] == [("q1", "5"), ("q3", "5")]
    assert positive[0]["solution"] in ("c5a", "c5b", "c5c")  # the most frequent correct answer, not "5.0"
    assert [(r["id"], r["selected_answer"]) for r in negative] == [("q1", "6"), ("q1", "7"), ("q2", "6")]
    assert len(pairs) == 1 and skipped == {"no_correct_answer": 1, "no_incorrect_answer": 1}
    pair = pairs[0]
    assert pair["chosen"] in ("c5a", "c5b", "c5c") and pair["rejected"] in ("w6a", "w6b", "w6c")
    assert pair["prompt"] == ROW["prompt"] and pair["gold_solution"] == "#### 5"
    assert cdpo_selection([ROW], 0.5, seed=0) == cdpo_selection([ROW], 0.5, seed=0)  # seeded


def test_rft_keeps_distinct_correct_samples():
    row = graded_row([("a", True, "5"), ("b", False, "6"), ("a", True, "5"), ("c", True, "5"), ("", True, "5")])
    assert [r["solution"] for r in correct_samples([row])] == ["a", "c"]
    assert [r["solution"] for r in correct_samples([row], dedup=False)] == ["a", "a", "c"]
    assert [r["solution"] for r in correct_samples([row], max_per_question=1)] == ["a"]
    assert correct_samples([row])[0]["question"] == "Q?"


class PrefersDigitAfterEquals(torch.nn.Module):
    """A negative model: the tiny model, plus a strong preference for a digit right after "= " (logit +30 at
    every position whose last two input tokens are "=" and " ")."""

    def __init__(self, model, tokenizer):
        super().__init__()
        self.model = model
        self.eq, self.space = tokenizer.convert_tokens_to_ids(["=", " "])
        self.digits = tokenizer.convert_tokens_to_ids(list("0123456789"))

    def forward(self, input_ids, attention_mask=None):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        hit = torch.zeros_like(input_ids, dtype=torch.bool)
        hit[:, 1:] = (input_ids[:, :-1] == self.eq) & (input_ids[:, 1:] == self.space)
        bias = torch.zeros_like(out.logits)
        bias[..., self.digits] = 30.0
        out.logits = out.logits + bias * hit[..., None]
        return out


PAIRS = [  # prompt, chosen, rejected: "= " occurs once per rejected response and never in a prompt
    ("Q: 2 + 3?\nA: ", "Step 1: 2 + 3 = 5\n#### 5", "Step 1: 2 + 3 = 6\n#### 6"),
    ("Q: Ann has 12 pens. Ann gets 3 more. How many pens now?\nA: ",
     "Step 1: Ann gets 3 more. 12 + 3 = 15\n#### 15", "Step 1: Ann gets 3 more. 12 + 3 = 16\n#### 16"),
]


def test_highest_weight_lands_on_the_preferred_token_in_the_training_batch(tokenizer, tiny_model):
    from datasets import Dataset

    from reasontrain.stages.critical import score_pairs
    from reasontrain.stages.train_preference import tokenize_pairs
    from reasontrain.trainers.preference import TokenFieldCollator

    rows = [{"id": str(i), "prompt": p, "chosen": c, "rejected": r} for i, (p, c, r) in enumerate(PAIRS)]
    scored = score_pairs(tiny_model, PrefersDigitAfterEquals(tiny_model, tokenizer), tokenizer, rows, gamma=1.0,
                         batch_size=2)
    tokenized, dropped, _ = tokenize_pairs(scored, tokenizer, max_prompt_length=256, append_eos=True)
    assert not dropped
    data = Dataset.from_list(tokenized)
    batch = TokenFieldCollator(pad_token_id=tokenizer.pad_token_id)([data[i] for i in range(len(data))])
    n = len(PAIRS)
    for i, (prompt, chosen, rejected) in enumerate(PAIRS):
        # The critical token: the character right after "= " in the rejected response.
        k = rejected.index("= ") + 2
        assert scored[i]["rejected_token_ids"] == tokenized[i]["rejected_ids"]
        assert max(range(len(scored[i]["rejected_weights"])), key=scored[i]["rejected_weights"].__getitem__) == k
        assert scored[i]["rejected_weights"][k] > 0.999 and scored[i]["chosen_weights"] == [1.0] * (len(chosen) + 1)
        row = batch["token_weights"][n + i]
        col = int(row.argmax())
        assert col == len(tokenized[i]["prompt_ids"]) + k
        assert tokenizer.decode(batch["input_ids"][n + i, col - 2:col + 1]) == "= " + rejected[k]
        # Chosen rows carry weight 1 on the response and 0 elsewhere.
        assert batch["token_weights"][i].sum() == len(tokenized[i]["chosen_ids"])
    # In the trainer's shifted view (column t scores token t + 1), the weight multiplies log p(critical token).
    shifted = batch["token_weights"][:, 1:]
    t = int(shifted[n].argmax())
    assert int(batch["input_ids"][n, t + 1]) == tokenizer.convert_tokens_to_ids(PAIRS[0][2][PAIRS[0][2].index("= ") + 2])


def test_weights_are_the_public_function_and_chosen_weights_are_p_ce(tokenizer, tiny_model):
    from reasontrain.data.pairs import tokenize_pair
    from reasontrain.losses import contrastive_token_weights
    from reasontrain.stages.critical import score_pairs

    torch.manual_seed(0)
    neg = type(tiny_model)(tiny_model.config).eval()  # another random model
    rows = [{"id": "0", "prompt": PAIRS[0][0], "chosen": PAIRS[0][1], "rejected": PAIRS[0][2]}]
    out = score_pairs(tiny_model, neg, tokenizer, rows, gamma=0.5, weight_chosen=True)[0]
    ids = tokenize_pair(tokenizer, *PAIRS[0])
    full = torch.tensor([ids["prompt_ids"] + ids["rejected_ids"]])
    p = len(ids["prompt_ids"])
    with torch.no_grad():
        zp, zn = tiny_model(full).logits, neg(full).logits
    expected = contrastive_token_weights(zp[:, p - 1:-1], zn[:, p - 1:-1], full[:, p:], gamma=0.5)[0]
    assert out["rejected_weights"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert all(0.0 <= w <= 1.0 for w in out["chosen_weights"]) and len(out["chosen_weights"]) == len(ids["chosen_ids"])
    # Past max_length the trainer truncates; those tokens get weight 1.
    short = score_pairs(tiny_model, neg, tokenizer, rows, gamma=0.5, max_length=p + 3)[0]["rejected_weights"]
    assert short[:3] == pytest.approx(expected[:3].tolist(), abs=1e-6) and short[3:] == [1.0] * (len(short) - 3)


def test_first_wrong_number_and_top_token_position(tokenizer):
    gold = "Step 1: Ann gets 3 more. 12 + 3 = 15\nStep 2: The pile grows 2 times. 15 x 2 = 30\n#### 30"
    resp = "Step 1: Ann gets 3 more. 12 + 3 = 16\nStep 2: The pile grows 2 times. 16 x 2 = 32\n#### 32"
    s, e = first_wrong_number(resp, gold)
    assert resp[s:e] == "16" and s == resp.index("16")
    assert first_wrong_number(gold, gold) is None
    longer = gold + "\nStep 3: 1"
    assert longer[slice(*first_wrong_number(longer, gold))] == "3"  # a number the gold solution lacks is wrong
    ids = tokenizer(resp, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    text, spans = token_spans(tokenizer, ids)
    assert text == resp and spans[-1][0] == spans[-1][1]  # EOS has no text
    assert position_class(spans, s + 1, (s, e)) == "at"  # the wrong digit '6'
    assert position_class(spans, e, (s, e)) == "right_after"  # the newline after it
    assert position_class(spans, s - 1, (s, e)) == "before"
    assert position_class(spans, e + 5, (s, e)) == "later"
    weights = [0.0] * len(ids)
    weights[s + 1], weights[-1] = 0.9, 1.0  # EOS is never a top token
    assert top_tokens(weights, spans, 1) == [s + 1]
    assert "= 1⟦6⟧\n" in marked(text, spans, [s + 1], weights)


SMALL = [
    "model=tiny", "start.sft=true", "model.tiny.hidden_size=32", "model.tiny.num_layers=1",
    "model.tiny.num_heads=2", "model.tiny.intermediate_size=64", "data.arith.train.size=128", "data.arith.test.size=8",
    "data.arith.hard.size=8", "start.train.max_steps=6", "start.train.global_batch_size=8",
    "start.train.micro_batch_size=8", "start.train.lr=3e-3", "sample.max_questions=32", "sample.n=8",
    "sample.temperature=1.0", "train.max_steps=2", "train.global_batch_size=4", "train.micro_batch_size=2",
    "train.logging_steps=1", "generation.max_new_tokens=40",
]
CDPO_SMALL = SMALL + ["cdpo.sft_train.max_steps=2", "cdpo.sft_train.global_batch_size=4",
                      "cdpo.sft_train.micro_batch_size=4", "cdpo.report_examples=2"]


def reasontrain(*args, timeout=400):
    proc = subprocess.run([sys.executable, "-m", "reasontrain.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def stage_result(run_dir, pattern):
    return [json.loads(p.read_text())["result"] for p in sorted(run_dir.glob(f"{pattern}/stage.json"))]


@pytest.mark.e2e
def test_cdpo_recipe_end_to_end(tmp_path):
    reasontrain("recipe=cdpo", *CDPO_SMALL, f"output_root={tmp_path}")
    run_dir = tmp_path / "cdpo" / "seed0"
    [select] = stage_result(run_dir, "cdpo-select-*")
    assert select["questions"] == 32 and select["pairs"] >= 1, select
    assert len(stage_result(run_dir, "cdpo-pos-*")) == len(stage_result(run_dir, "cdpo-neg-*")) == 1
    scored = [json.loads(line) for line in next(run_dir.glob("cdpo-score-*/pairs.jsonl")).open()]
    assert len(scored) == select["pairs"]
    for pair in scored:
        assert len(pair["rejected_weights"]) == len(pair["rejected_token_ids"])
        assert all(0.0 <= w <= 1.0 for w in pair["rejected_weights"]) and set(pair["chosen_weights"]) == {1.0}
    [train] = stage_result(run_dir, "cdpo-[0-9a-f]*")
    assert train["pairs"] == len(scored) and train["steps"] == 2

    metrics = json.loads((run_dir / "metrics.json").read_text())
    critical = metrics["critical_tokens"]
    assert critical["judged"] + critical["no_wrong_number"] == len(scored)
    assert sum(critical["top_position"].values()) == critical["judged"]
    report = (run_dir / "report.md").read_text()
    assert "## Critical tokens" in report and "⟦" in report and "critical_tokens.png" in report
    assert (run_dir / "critical_tokens.png").stat().st_size > 1000

    # The per-position loss and the weights-1 ablation reuse every stage up to training.
    again = reasontrain("recipe=cdpo", *CDPO_SMALL, "preference.loss_mode=per_position", f"output_root={tmp_path}")
    for stage in ("sample", "grade", "cdpo-select", "cdpo-pos", "cdpo-neg", "cdpo-score"):
        assert f"stage {stage}: reusing" in again.stderr + again.stdout
    reasontrain("recipe=cdpo", *CDPO_SMALL, "cdpo.token_weights=none", f"output_root={tmp_path}")
    assert len(stage_result(run_dir, "cdpo-[0-9a-f]*")) == 3
    assert "critical_tokens" not in json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.e2e
def test_rft_recipe_end_to_end(tmp_path):
    reasontrain("recipe=rft", *SMALL, f"output_root={tmp_path}")
    run_dir = tmp_path / "rft" / "seed0"
    [select] = stage_result(run_dir, "rft-select-*")
    records = [json.loads(line) for line in next(run_dir.glob("rft-select-*/records.jsonl")).open()]
    assert select["examples"] == len(records) >= 1 and select["examples"] <= select["correct_samples"]
    graded = {r["id"]: r for r in map(json.loads, next(run_dir.glob("grade-*/graded.jsonl")).open())}
    for r in records:
        assert r["solution"] in [c for c, ok in zip(graded[r["id"]]["completions"], graded[r["id"]]["correct"]) if ok]
    [train] = stage_result(run_dir, "rft-[0-9a-f]*")
    assert train["examples"] == len(records) and train["steps"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["after"]) == {"test", "hard"}


@pytest.mark.cli
@pytest.mark.parametrize("variant,data,shots,temperature", [
    ("llama-3-8b-gsm8k", "gsm8k", 8, 0.5), ("deepseek-math-7b-gsm8k", "gsm8k", 8, 1.0),
    ("llama-3-8b-math", "math", 4, 0.1), ("deepseek-math-7b-math", "math", 4, 0.3)])
def test_reproduction_overlays_hold_the_paper_settings(variant, data, shots, temperature):
    import yaml

    cfg = yaml.safe_load(reasontrain(f"recipe=cdpo/{variant}", "--cfg", "job").stdout)
    assert cfg["method"] == "cdpo" and cfg["data"]["name"] == data and cfg["data"]["num_shots"] == shots == cfg["sample"]["num_shots"]
    assert cfg["preference"]["beta"] == 0.1 and cfg["preference"]["reference"] == "lora"
    assert cfg["model"]["lora"] == {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    t = cfg["train"]
    assert (t["lr"], t["epochs"], t["global_batch_size"], t["warmup"]) == (4e-5, 3, 8, 0.1)
    assert cfg["sample"]["n"] == 64 and cfg["sample"]["temperature"] == temperature
    assert cfg["cdpo"]["sft_lora"]["r"] == 8 and cfg["cdpo"]["sft_train"]["lr"] == 3e-4
    if data == "math":
        assert cfg["data"]["files"]["test"]["path"].endswith("math500/test.jsonl")


def test_sampling_prompt_is_few_shot_while_rows_keep_the_zero_shot_prompt(tokenizer, tiny_model, tmp_path,
                                                                          monkeypatch):
    """`sample.num_shots`: generation sees k solved training examples (never the question itself); the row's
    `prompt`, which pairs and SFT train on, stays zero-shot."""
    from omegaconf import OmegaConf

    import reasontrain.stages.sample as sample_mod
    from reasontrain.config import RootConfig
    from reasontrain.data.formats import render_prompt
    from reasontrain.stages.data import read_jsonl, write_jsonl

    records = [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1),
                "solution": f"Step 1: {i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(6)]
    questions = tmp_path / "train.jsonl"
    write_jsonl(questions, records)
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    cfg = OmegaConf.structured(RootConfig(recipe="cdpo"))
    cfg.sample.n, cfg.sample.num_shots, cfg.generation.max_new_tokens = 1, 2, 4
    seen = []
    real_generate = sample_mod.generate
    monkeypatch.setattr(sample_mod, "generate", lambda model, tok, prompts, *a, **k: seen.extend(prompts) or
                        real_generate(model, tok, prompts, *a, **k))
    rows = read_jsonl(sample_mod.sample_stage(cfg, tmp_path / "run", str(model_dir), questions))
    by_id = {r["id"]: r for r in records}
    for row, gen_prompt in zip(rows, seen):
        assert row["prompt"] == render_prompt(row, cfg.data, tokenizer)  # zero-shot
        assert len(row["sample_shots"]) == 2 and row["id"] not in row["sample_shots"]
        for shot in row["sample_shots"]:
            assert by_id[shot]["solution"] in gen_prompt
        assert gen_prompt.endswith(row["prompt"].split("Q: ")[-1]) and gen_prompt.count("Q: ") == 3
