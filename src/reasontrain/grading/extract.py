"""Find the final answer a response commits to: `\\boxed{}`, `#### N`, "The answer is ...", or the last number.

Everything here is a linear scan or a regular expression without nested repetition, so any text, however long or
malformed, is processed in time proportional to its length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

EXTRACTORS = ("boxed", "hashes", "answer_is", "last_number")
DEFAULT_EXTRACTORS = EXTRACTORS

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# `\boxed 5`: the argument is the next token, as TeX reads it.
_BOX_BARE = re.compile(r"\\boxed[ \t]+([^\s${}\\]+)")
# Tokens that matter for brace matching; a backslash escapes the next character, so `\{` and `\}` are literal.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"answer\s+is\s*[:：]?[ \t]*(?:\*\*)?[ \t]*", re.IGNORECASE)
# Math spans; `\$` inside one is an escaped dollar sign, not its end.
_MATH_SPAN = re.compile(r"\$\$((?:\\.|[^\\$])+)\$\$|\$((?:\\.|[^\\$])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
# A sentence ends at a period followed by a space or the end; `3.5` is not an ending.
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
# A number followed by prose: the number is the answer ("The answer is 18 dollars since ...").
_LEADING_NUMBER = re.compile(r"\$?(-?\d[\d,]*(?:\.\d+)?)\s+([A-Za-z]{2,})\b")
_MATH_WORDS = {"pi", "sqrt", "times", "cdot", "over", "plus", "minus", "and", "or", "divided", "to", "mod"}
# Not glued to a word: "AZYUK2A" holds no number.
_NUMBER = re.compile(
    r"(?<![A-Za-z\d.])(?:"
    r"-?\d+\s*/\s*\d+(?![\d.])"            # a simple fraction, 3/4
    r"|-?\d{1,3}(?:,\d{3})+(?:\.\d+)?"     # thousands separators, 1,234.5
    r"|-?\d+(?:\.\d+)?|-?\.\d+)"
)


def _boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the contents of every balanced `\\boxed{...}` / `\\fbox{...}`, in one pass over the text."""
    opens = {m.end() - 1 for m in _BOX_OPEN.finditer(text)}
    if not opens:
        return []
    spans = []
    stack: list[int] = []
    for tok in _BRACE_TOKEN.finditer(text, min(opens)):
        s = tok.group()
        if s == "{":
            stack.append(tok.start())
        elif s == "}" and stack:
            start = stack.pop()
            if start in opens:
                spans.append((start + 1, tok.start()))
    return spans


def _last_boxed_end(text: str) -> tuple[str, int] | None:
    """(content, end) of the last complete box, as `last_boxed` chooses it."""
    best: tuple[int, str] | None = None
    for start, end in _boxed_spans(text):
        if best is None or end > best[0]:
            best = (end, text[start:end])
    for m in _BOX_BARE.finditer(text):
        if best is None or m.end() > best[0]:
            best = (m.end(), m.group(1))
    return None if best is None else (best[1], best[0])


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), braces matched; None if none.

    "Last" means the one that closes last, so `\\boxed{\\boxed{5}}` gives `\\boxed{5}`; `unwrap_boxed` peels the rest.
    An unclosed box is skipped, so a response cut off inside its final box does not count as answering.
    """
    found = _last_boxed_end(text)
    return None if found is None else found[0]


def count_boxes(text: str) -> int:
    """How many complete boxes the text has (a box inside a box counts too)."""
    return len(_boxed_spans(text)) + sum(1 for _ in _BOX_BARE.finditer(text))


def unwrap_boxed(answer: str) -> str:
    """`\\boxed{\\boxed{x}}` -> `x`: strip boxes that wrap the whole answer (one brace-matching pass)."""
    s = answer.strip()
    if not _BOX_OPEN.match(s):
        return s
    close_of = dict(_boxed_spans(s))
    lo, hi = 0, len(s)
    while True:
        m = _BOX_OPEN.match(s, lo)
        if not m or close_of.get(m.end()) != hi - 1:
            return s[lo:hi]
        lo, hi = m.end(), hi - 1
        while lo < hi and s[lo].isspace():
            lo += 1
        while hi > lo and s[hi - 1].isspace():
            hi -= 1


def _last_answer_is(text: str, start: int = 0) -> re.Match | None:
    last = None
    for last in _ANSWER_IS.finditer(text, start):
        pass
    return last


def _answer_phrase(text: str, last: re.Match | None = None) -> str | None:
    """What follows the last "answer is": the first math span if it starts with one, else the rest of the sentence."""
    last = last or _last_answer_is(text)
    if last is None:
        return None
    rest = text[last.end():last.end() + 2000]
    boxed = last_boxed(rest)
    if boxed is not None:
        return boxed
    m = _MATH_SPAN.match(rest)
    if m:
        return next(g for g in m.groups() if g is not None).strip()
    end = _SENTENCE_END.search(rest)
    phrase = (rest[:end.start()] if end else rest).strip().rstrip("*").strip()
    lead = _LEADING_NUMBER.match(phrase)
    if lead and lead.group(2).lower() not in _MATH_WORDS:  # "42 because ..." -> "42"; "3 pi" stays
        return lead.group(1)
    return phrase or None


def _stated_after_box(text: str) -> str | None:
    """A math span stated as the answer after the last box ("\\boxed{200} ... The final answer is $10,455$."): the
    later statement is the one the response ends on, as math-verify reads it too."""
    found = _last_boxed_end(text)
    last = None if found is None else _last_answer_is(text, found[1])
    if last is None:
        return None
    m = _MATH_SPAN.match(text, last.end(), last.end() + 2000)
    return next(g for g in m.groups() if g is not None).strip() if m else None


def _last_number(text: str) -> str | None:
    last = None
    for last in _NUMBER.finditer(text):
        pass
    return None if last is None else last.group()


def _hashes(text: str) -> str | None:
    found = _HASHES.findall(text)
    if not found:
        return None
    return found[-1].strip() or None


def after_final_marker(text: str, markers: Sequence[str]) -> str:
    """The text after the last occurrence of any marker (e.g. `</think>`); the whole text if none occurs."""
    cut = -1
    for marker in markers:
        i = text.rfind(marker)
        if i >= 0:
            cut = max(cut, i + len(marker))
    return text if cut < 0 else text[cut:]


_EXTRACT = {"boxed": last_boxed, "hashes": _hashes, "answer_is": _answer_phrase, "last_number": _last_number}


def extract_with_source(text: str, extractors: Sequence[str] = DEFAULT_EXTRACTORS,
                        final_markers: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """`extract_answer`, and the name of the extractor that found the answer (None, None when none does)."""
    unknown = set(extractors) - set(EXTRACTORS)
    if unknown:
        raise ValueError(f"unknown extractors {sorted(unknown)}; choose from {EXTRACTORS}")
    if final_markers:
        text = after_final_marker(text, final_markers)
    for name in extractors:
        found = _EXTRACT[name](text)
        if found is not None and name == "boxed" and "answer_is" in extractors:
            stated = _stated_after_box(text)
            if stated:
                found, name = stated, "answer_is"
        if found is not None:
            found = unwrap_boxed(found)
            if found:
                return found, name
    return None, None


def extract_answer(text: str, extractors: Sequence[str] = DEFAULT_EXTRACTORS,
                   final_markers: Sequence[str] = ()) -> str | None:
    """The final answer in `text`, from the first extractor in `extractors` that finds one; None if none does.

    `extractors` names rules from `EXTRACTORS` in priority order, so a GSM8K benchmark can demand `("hashes",)`.
    `final_markers` restricts the search to the text after the last marker, e.g. after `</think>`.
    """
    return extract_with_source(text, extractors, final_markers)[0]


def gold_answer(gold: str) -> str | None:
    """The gold final answer: from a worked solution (`#### N`, else the last `\\boxed{}`), or the bare answer.

    None when the gold has a final-answer marker but no answer behind it (e.g. an unclosed box), or is empty;
    the grader reports such golds as unparseable and never counts them correct.
    """
    gold = str(gold)
    if "####" in gold:
        return _hashes(gold)
    if "\\boxed" in gold or "\\fbox" in gold:
        found = last_boxed(gold)
        return (unwrap_boxed(found) or None) if found is not None else None
    return gold.strip() or None
