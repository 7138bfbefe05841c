"""Answer extraction and comparison: `#### N`, the last `\\boxed{}`, "The answer is", else the last number.

This is the basic grader: numbers compared with a tolerance, other answers compared as normalized strings.
Model output is only ever matched with regular expressions, never evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_HASHES = re.compile(r"####\s*(.+)")
_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is:?\s*(.+)")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str  # correct | wrong | no_answer | gold_unparseable | truncated
    predicted: str | None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, with nested braces matched; None if absent or unbalanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def extract_answer(text: str) -> str | None:
    """The final answer a response commits to, by the first rule that finds one."""
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    said = _ANSWER_IS.findall(text)
    if said:
        return said[-1].strip().rstrip(".")
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def to_number(answer: str) -> float | None:
    """A float when the answer is a plain number (thousands separators, $, % and a trailing period allowed)."""
    s = answer.strip().rstrip(".").replace(",", "").replace("$", "").replace("\\%", "").rstrip("%").strip()
    if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", s):
        return float(s)
    m = re.fullmatch(r"(-?\d+)\s*/\s*(\d+)", s)
    if m and int(m.group(2)) != 0:
        return int(m.group(1)) / int(m.group(2))
    return None


def _normalize_text(answer: str) -> str:
    return re.sub(r"\s+", "", answer).rstrip(".").lower()


def gold_answer(gold: str) -> str | None:
    """The gold final answer: a bare answer, or extracted from a worked solution (`#### N` / `\\boxed{}`)."""
    if "####" in gold or "\\boxed" in gold or "\\fbox" in gold:
        return extract_answer(gold)
    return gold.strip() or None


def grade(response: str, gold: str, truncated: bool = False, truncated_is_wrong: bool = False,
          rel_tol: float = 1e-4) -> Verdict:
    """Compare the answer in `response` with `gold`. An unparseable gold answer is never correct."""
    target = gold_answer(str(gold))
    if target is None:
        return Verdict(False, "gold_unparseable", None)
    if truncated and truncated_is_wrong:
        return Verdict(False, "truncated", None)
    predicted = extract_answer(response)
    if predicted is None:
        return Verdict(False, "no_answer", None)
    p, g = to_number(predicted), to_number(target)
    if g is not None:
        ok = p is not None and abs(p - g) <= rel_tol * max(1.0, abs(g))
    else:
        ok = _normalize_text(predicted) == _normalize_text(target)
    return Verdict(ok, "correct" if ok else "wrong", predicted)
