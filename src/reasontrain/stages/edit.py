"""RISE's step pairs: split a correct solution into steps, inject a subtle error into one step, keep minimal edits.

A step pair shares the prompt and the correct previous steps; chosen is the correct step and rejected the same
step with a few characters edited, so their DPO gradient concentrates on the edited tokens.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from reasontrain.config import Editor, ErrorType
from reasontrain.data.errors import levenshtein, rule_edit
from reasontrain.distributed import is_main_process
from reasontrain.stages.base import run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl

_STEP_HEADER = re.compile(r"(?:^|\n)Step \d+:")
_ENDS_WITH_HEADER = re.compile(r"(?:^|\n)Step \d+: ?$")
_SENTENCE_SPLIT = re.compile(r"(?<=\n)|(?<=\. )")

# RISE's self-correction blacklist for edits, on top of the chosen-side blacklist.
EDIT_BLACKLIST = ("mistakenly", "incorrect", "wrong", "misleading")

# RISE's self-editing instructions (paraphrased), one per error type.
EDIT_INSTRUCTIONS = {
    "change_value": "Edit one numerical value in the current step so that the calculation becomes wrong.",
    "change_multi_value": "Edit a numerical value, or a series of related values, in the current step so that the "
                          "calculation becomes wrong.",
    "wrong_sub": "Edit a value or symbol in the current step to make a wrong substitution.",
    "del_term": "Delete one calculation term in the current step so that the calculation becomes wrong.",
    "change_symbol": "Change one calculation operator in the current step so that the calculation becomes wrong.",
    "swap": "Swap two calculation terms in the current step so that the calculation becomes wrong.",
}
EDIT_SUFFIX = " Change only a few tokens, and do not state that errors have been made."
EDIT_PREFILL = "The edited Current Step:\n```\n"


def split_steps(solution: str, opened: bool = False) -> list[tuple[str, str]]:
    """[(text before step i including its header, text of step i)] for every step of `solution`.

    Step i runs up to (not including) the newline before the next header; the last step runs to the end, so
    it holds the final answer line. `opened`: the prompt already ends with the first header (the "Step 1: "
    prefill), so the text before the first header in `solution` is step 1.
    """
    heads = list(_STEP_HEADER.finditer(solution))
    out = []
    first = heads[0].start() if heads else len(solution)
    if opened and solution[:first].strip():
        out.append(("", solution[:first]))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(solution)
        out.append((solution[:m.end()], solution[m.end():end]))
    return out


def span_to_edit(step: str) -> tuple[int, int]:
    """(start, end) of the last at most 4 sentences of a step (sentences split on newlines and '. ')."""
    pieces = [p for p in _SENTENCE_SPLIT.split(step) if p]
    tail = "".join(pieces[-4:])
    start = len(step) - len(tail)
    return start, len(step)


def strip_boxed(text: str) -> str:
    """`\\boxed{42}` -> `42` everywhere (RISE strips the answer wrapper from the rejected side).
    An unbalanced box is left as it is."""
    out, i = [], 0
    while (start := text.find("\\boxed{", i)) >= 0:
        depth, j = 1, start + len("\\boxed{")
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth:
            break
        out.append(text[i:start] + text[start + len("\\boxed{"):j - 1])
        i = j
    return "".join(out) + text[i:]


def edit_candidates(pairs: list[dict], seed: int) -> list[dict]:
    """One record per step of every chosen full solution, with the span to edit and an error type to inject."""
    rng = random.Random(seed)
    out = []
    for pair in pairs:
        opened = bool(_ENDS_WITH_HEADER.search(pair["prompt"]))
        for i, (before, step) in enumerate(split_steps(pair["chosen"], opened=opened)):
            start, end = span_to_edit(step)
            out.append({"id": pair["id"], "step": i + 1, "prompt": pair["prompt"], "question": pair.get("question", ""),
                        "before": before, "step_text": step, "span": [start, end],
                        "seed": rng.randrange(2**31)})
    return out


def self_edit_prompt(record: dict, error_type: str) -> str:
    """The user turn asking the policy to inject `error_type` into the current step."""
    start, end = record["span"]
    fence = "```"
    return (f"Question:\n{fence}\n{record['question']}\n{fence}\n\n"
            f"Initial Answer:\n{fence}\n{record['before']}\n{fence}\n\n"
            f"Current Step:\n{fence}\n{record['step_text'][start:end]}\n{fence}\n\n"
            + EDIT_INSTRUCTIONS[error_type] + EDIT_SUFFIX)


def step_pairs_stage(cfg, run_dir: Path, full_pairs_path: Path, policy_dir: str) -> Path:
    """`pairs.jsonl` of step pairs (kind "edit"), after the blacklist and Levenshtein filters."""
    r = cfg.rise
    self_edit = r.editor == Editor.self  # the policy edits: its generation settings count
    key = stage_key_from(cfg, reads=("rise", "seed", *(("generation", "model.dtype") if self_edit else ())),
                         inputs={"pairs": full_pairs_path, "policy": policy_dir if self_edit else None})

    def run(folder: Path) -> dict:
        pairs = read_jsonl(full_pairs_path)
        records = edit_candidates(pairs, cfg.seed)
        allowed = tuple(ErrorType(t).value for t in r.error_types)
        edits = _self_edits(cfg, records, policy_dir, allowed) if self_edit else [
            rule_edit(rec["step_text"][rec["span"][0]:rec["span"][1]], random.Random(rec["seed"]), allowed)
            for rec in records]
        kept, dropped, types = [], Counter(), Counter()
        for rec, edit in zip(records, edits):
            if edit is None:
                dropped["no_applicable_error"] += 1
                continue
            start, end = rec["span"]
            original = rec["step_text"][start:end]
            if any(w in edit.text.lower() for w in (*EDIT_BLACKLIST, *r.edit_blacklist)):
                dropped["self_correction_words"] += 1
                continue
            distance = levenshtein(original, edit.text)
            if distance == 0:
                dropped["unchanged"] += 1
                continue
            if distance > r.max_edit_chars or distance > r.max_edit_ratio * max(1, len(original)):
                dropped["edit_too_large"] += 1
                continue
            rejected = strip_boxed(rec["step_text"][:start] + edit.text + rec["step_text"][end:])
            types[edit.error_type] += 1
            kept.append({"id": rec["id"], "kind": "edit", "step": rec["step"], "error_type": edit.error_type,
                         "prompt": rec["prompt"] + rec["before"], "chosen": rec["step_text"], "rejected": rejected,
                         "edit_distance": distance, "append_eos": False})
        if is_main_process():
            write_jsonl(folder / "pairs.jsonl", kept)
        return {"candidates": len(records), "kept": len(kept), "dropped": dict(dropped), "error_types": dict(types)}

    folder, _ = run_stage(run_dir, f"edit-{Editor(r.editor).value}", key, run)
    return folder / "pairs.jsonl"


def _self_edits(cfg, records: list[dict], policy_dir: str, allowed: tuple[str, ...]):
    """The policy edits its own steps: greedy, one error-type instruction each, output cut at the closing fence."""
    from reasontrain.data.errors import Edit, candidate_types
    from reasontrain.generation import SamplingParams, generate
    from reasontrain.models.loading import load_pretrained

    model, tokenizer = load_pretrained(str(policy_dir), cfg.model.dtype, cfg.model.trust_remote_code)
    chosen_types, prompts = [], []
    for rec in records:
        span = rec["step_text"][rec["span"][0]:rec["span"][1]]
        types = [t for t in candidate_types(span) if t in allowed] or list(allowed)
        t = random.Random(rec["seed"]).choice(types)
        chosen_types.append(t)
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": self_edit_prompt(rec, t)}]
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                       + EDIT_PREFILL)
    outs = generate(model, tokenizer, prompts, SamplingParams(n=1, temperature=0.0,
                                                               max_new_tokens=cfg.generation.max_new_tokens,
                                                               stop=("```",)), cfg.generation, desc="self-edit",
                    model_path=str(policy_dir))
    return [Edit(t, o[0].text.strip("\n")) if o[0].finish_reason == "stop" and o[0].text.strip() else None
            for t, o in zip(chosen_types, outs)]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def differing_tokens(a: list[int], b: list[int]) -> int:
    """Tokens outside the longest matching blocks of two id lists, counted on the longer side."""
    from difflib import SequenceMatcher

    matched = sum(m.size for m in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return max(len(a), len(b)) - matched


def edit_pair_stats(pairs: list[dict], tokenizer) -> dict:
    """How small and how consequential the edit pairs are.

    `median_differing_tokens`: tokens that differ between chosen and rejected (outside their matching blocks).
    `changes_step_result`: share of edits whose last number (the step's result) differs from the chosen step's.
    `changes_final_answer`: among edits of the step that states the final answer, the share that change it.
    """
    import statistics

    edits = [p for p in pairs if p.get("kind") == "edit"]
    if not edits:
        return {"edit_pairs": 0}
    diffs, result_changed, final_steps, final_changed = [], 0, 0, 0
    for p in edits:
        c_ids = tokenizer(p["chosen"], add_special_tokens=False).input_ids
        r_ids = tokenizer(p["rejected"], add_special_tokens=False).input_ids
        diffs.append(differing_tokens(c_ids, r_ids))
        c_nums, r_nums = _NUMBER.findall(p["chosen"]), _NUMBER.findall(strip_boxed(p["rejected"]))
        changed = (c_nums[-1:] != r_nums[-1:])
        result_changed += changed
        if "####" in p["chosen"] or "\\boxed" in p["chosen"]:
            final_steps += 1
            final_changed += changed
    return {"edit_pairs": len(edits), "median_differing_tokens": statistics.median(diffs),
            "mean_differing_tokens": round(sum(diffs) / len(diffs), 2),
            "changes_step_result": round(result_changed / len(edits), 4),
            "answer_step_edits": final_steps,
            "changes_final_answer": round(final_changed / final_steps, 4) if final_steps else None}


def mix_pairs(full: list[dict], edits: list[dict], edits_per_question: int, use_full: bool, seed: int) -> list[dict]:
    """For each question with a full pair: the full pair, then up to N of its step pairs chosen at random."""
    rng = random.Random(seed)
    by_id: dict[str, list[dict]] = {}
    for e in edits:
        by_id.setdefault(e["id"], []).append(e)
    out = []
    for pair in full:
        if use_full:
            out.append(pair)
        candidates = by_id.pop(pair["id"], [])
        out += rng.sample(candidates, min(edits_per_question, len(candidates)))
    return out
