"""Prompt formats: how a problem record becomes the text the model is conditioned on.

Each format has an answer convention that the grader's extractors match:
- `chat`: the tokenizer's chat template, user turn = question + `data.instruction` (e.g. the RISE/OREAL
  `\\boxed{}` instruction), optional system prompt and assistant prefill ("Let's think step by step.\\nStep 1: ").
- `alpaca`: the Alpaca instruction template used by Masked Thought; answers end in `#### N`.
- `qa`: `Question: {q}\\nAnswer: ` (GSM8K few-shot style of cDPO); answers say "The answer is N.".
- `minerva`: `Problem:\\n{q}\\n\\nSolution:\\n` (MATH few-shot style of cDPO); answers use `\\boxed{}`.
`data.num_shots` > 0 prepends that many solved training examples in the same format.
"""

from __future__ import annotations

from reasontrain.config import PromptFormat

ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{question}\n\n### Response: "
)
QA = "Question: {question}\nAnswer: "
MINERVA = "Problem:\n{question}\n\nSolution:\n"
TEMPLATES = {"alpaca": ALPACA, "qa": QA, "minerva": MINERVA}
FORMATS = ("chat", *TEMPLATES)
# Few-shot blocks are separated by a blank line, so the next "Question:"/"Problem:" marks the end of an answer.
SHOT_SEPARATOR = "\n\n"


def render_prompt(record: dict, data_cfg, tokenizer, shots: list[dict] | None = None,
                  prefill: str | None = None) -> str:
    """The prompt text for `record` (ending where the model's answer starts).

    `prefill` replaces `data_cfg.prefill` when given (RISE samples with a "Step 1: " prefill, evaluates without).
    """
    prefill = data_cfg.prefill if prefill is None else prefill
    question = record["question"] + (data_cfg.instruction or "")
    fmt = PromptFormat(data_cfg.prompt_format).value
    if fmt == "chat":
        messages = []
        if data_cfg.system_prompt:
            messages.append({"role": "system", "content": data_cfg.system_prompt})
        for shot in shots or ():
            messages.append({"role": "user", "content": shot["question"] + (data_cfg.instruction or "")})
            messages.append({"role": "assistant", "content": shot["solution"]})
        messages.append({"role": "user", "content": question})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + (prefill or "")
    if fmt not in TEMPLATES:
        raise ValueError(f"data.prompt_format={fmt!r} is not one of {FORMATS}")
    template = TEMPLATES[fmt]
    block = "".join(template.format(question=s["question"]) + s["solution"].strip() + SHOT_SEPARATOR
                    for s in shots or ())
    return block + template.format(question=question) + (prefill or "")


def pick_shots(train_records: list[dict], k: int, seed: int) -> list[dict]:
    """`k` solved examples drawn from the training split with `seed` (the same for every prompt)."""
    import random

    if k <= 0:
        return []
    if len(train_records) < k:
        raise ValueError(f"data.num_shots={k} but the train split has only {len(train_records)} records")
    return random.Random(seed).sample(train_records, k)


def shots_excluding(pool: list[dict], record: dict) -> list[dict]:
    """`pool` (k+1 shots from `pick_shots`) less the record's own question, cut to k: a training question is never
    its own solved example."""
    kept = [s for s in pool if s["question"] != record["question"]]
    return kept[: len(pool) - 1]


def prompt_key(data_cfg) -> dict:
    """Everything that changes the rendered prompts, for stage cache keys."""
    from reasontrain.config import to_plain

    d = to_plain(data_cfg)
    return {k: d[k] for k in ("prompt_format", "system_prompt", "instruction", "prefill", "num_shots", "stop",
                              "max_prompt_length")}
