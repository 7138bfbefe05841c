"""Prompt formats: how a problem record becomes the text the model is conditioned on.

`chat` renders through the tokenizer's chat template (the tiny model has one); `alpaca` and `plain` are fixed
strings. Each returns the prompt only: the completion (the solution) is appended by the trainer.
"""

from __future__ import annotations

ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{question}\n\n### Response:"
)
PLAIN = "Question: {question}\nAnswer:"
FORMATS = ("chat", "alpaca", "plain")


def render_prompt(record: dict, data_cfg, tokenizer) -> str:
    question = record["question"] + (data_cfg.instruction or "")
    fmt = data_cfg.prompt_format
    if fmt == "chat":
        messages = []
        if data_cfg.system_prompt:
            messages.append({"role": "system", "content": data_cfg.system_prompt})
        messages.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if fmt == "alpaca":
        return ALPACA.format(question=question) + " "
    if fmt == "plain":
        return PLAIN.format(question=question) + " "
    raise ValueError(f"data.prompt_format={fmt!r} is not one of {FORMATS}")


def completion_text(record: dict, tokenizer, fmt: str) -> str:
    """The SFT target for a record: its solution, closed by EOS so the model learns to stop."""
    return record["solution"] + (tokenizer.eos_token or "")
