"""Symbolic equivalence of two cleaned answers with math-verify (sets, intervals, matrices, radicals, expressions), and
`judge`: that comparison, then math-verify's own reading of a response where the grader's extraction is weak.

These functions have no time bound of their own: math-verify's signal-based timeouts are switched off because they only
work in a main thread. Call them through `reasontrain.grading.timeouts`, which runs them in a killable worker process.

Importing this module (only grading workers do) installs shortcuts into math-verify that leave every verdict as it
was and make the check several times cheaper (`fast_paths.py`): LaTeX is parsed with ANTLR's two-stage strategy (the
one decision SLL gets wrong on `x^2` predicted in LL mode, memoized), integer literals skip sympy's expression parser,
and the simplification of `a - b` is skipped when `a - b` is nonzero at a point. Each distinct answer is parsed once
per worker (`parsed`, an LRU cache), however many pairs it is in.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from reasontrain.grading.fast_paths import install, warm_parser

# math-verify warns once that its timeout is disabled; here the worker process is the timeout.
logging.getLogger("math_verify").setLevel(logging.ERROR)
install()

_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


@lru_cache(maxsize=4096)
def parsed(answer: str) -> tuple:
    """math-verify's reading of one answer; the whole string is the answer, so it is boxed before parsing."""
    return tuple(parse("\\boxed{" + answer + "}", extraction_config=_CONFIG, parsing_timeout=None))


@lru_cache(maxsize=16)
def _reading_configs(boxed: bool, anchored: bool, anywhere: bool) -> tuple:
    """math-verify's extraction configs matching the grader's extractors: boxes (first priority), anchored
    statements ("final answer is $x$", "answer: x"), and math spans or expressions anywhere in the text."""
    return (LatexExtractionConfig(boxed_match_priority=0 if boxed else -1, try_extract_without_anchor=anywhere),
            ExprExtractionConfig(try_extract_without_anchor=anywhere))


@lru_cache(maxsize=1024)
def read_gold(gold: str) -> tuple:
    """math-verify's reading of a gold written as text (`$x \\ge 5$`, `\\boxed{1}, \\boxed{2}`)."""
    return tuple(parse(gold, extraction_config=_reading_configs(True, True, True), parsing_timeout=None))


def read_response(response: str, how: tuple[bool, bool, bool]) -> tuple:
    """math-verify's own extraction from a response: boxes joined by "and"/"," as a set, "final answer is",
    relations, matrices, percent words, decimal commas; () when it finds nothing."""
    return tuple(parse(response, extraction_config=_reading_configs(*how), parsing_timeout=None))


def judge(predicted: str | None, gold: str, strict: bool = True, response: str | None = None,
          gold_text: str | None = None, how: tuple[bool, bool, bool] = (True, True, True)) -> tuple[bool, str | None]:
    """(equal, what math-verify read in the response). `predicted` (our cleaned answer, or None) is compared with the
    cleaned `gold` first; then, if `response` is given, math-verify's own reading of it against `gold_text` read the
    same way (or against `gold` when `gold_text` is None). The second value is None unless that reading ran and
    found an answer."""
    if predicted is not None and symbolic_equal(predicted, gold, strict):
        return True, None
    if response is None:
        return False, None
    g = read_gold(gold_text) if gold_text is not None else parsed(gold)
    if not g:
        return False, None
    p = read_response(response, how)
    if not p:
        return False, None
    shown = p[-1] if isinstance(p[-1], str) else str(p[0])
    if predicted is not None and gold_text is None and p == parsed(predicted):
        return False, shown  # the same reading as ours, already compared
    return bool(verify(list(g), list(p), strict=strict, timeout_seconds=None)), shown


def symbolic_equal(predicted: str, gold: str, strict: bool = True) -> bool:
    """Whether math-verify finds `predicted` equivalent to `gold`; False when either cannot be parsed."""
    g = parsed(gold)
    p = parsed(predicted) if g else ()  # an unreadable gold matches nothing: the answer need not be parsed
    if not g or not p:
        return False
    return bool(verify(list(g), list(p), strict=strict, timeout_seconds=None))


def warm_up() -> None:
    """Pay math-verify's one-time set-up (parser construction, sympy caches, the parser's prediction cache for common
    answer shapes) before the first real answer."""
    symbolic_equal("\\frac{\\sqrt{2}}{2}", "(0, 1]")
    warm_parser(lambda answer: parsed(answer))
    parsed.cache_clear()
